"""What pyproject.toml cannot say: the Hydra config tree stays at the top level (``configs/``, the design card's
layout) and ships inside the package as ``negate.configs`` (each group a subpackage of YAML files), so a non-editable
``pip install .`` has its configs and ``negate.paths.CONFIG_DIR`` finds them there. The rest is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

CONFIG_PACKAGES = ["negate.configs", *(f"negate.configs.{name}" for name in find_namespace_packages(where="configs"))]

setup(
    packages=[*find_namespace_packages(include=["negate*"]), *CONFIG_PACKAGES],
    package_dir={"negate.configs": "configs"},  # their YAML files: pyproject.toml, package-data "*"
)
