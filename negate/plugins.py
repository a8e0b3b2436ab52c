"""One registry per pluggable kind, shaped like timm's (``register_model`` / ``create_model`` / ``list_models``).

A :class:`Registry` maps names to the things a config group selects: ``@CLASSIFIERS.register("logreg")`` on a
class makes ``classifier=logreg`` work, ``CLASSIFIERS.build(cfg.classifier)`` builds it and ``CLASSIFIERS.names()``
lists it (``negate --help``, tests parametrised over every name). On first use a registry imports every module of
its package, so adding a detector, feature family, data source, run logger or augmentation is one module there and
one YAML in ``configs/<group>/``; nothing else lists it. Encoders and autoencoders are specs, not code: one YAML
each in ``configs/encoder|ae/``, registered by :mod:`negate.models.encoders` / :mod:`negate.models.autoencoders`.

This module imports nothing of negate's own at import time, so every layer can register here.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import pkgutil
from pathlib import Path
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")


def plain(cfg: Any) -> dict:
    """A config mapping (OmegaConf or plain) as a resolved plain dict."""
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"expected a name or a config mapping, got {type(cfg).__name__}")


def has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" in value or any(has_target(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(has_target(v) for v in value)


class Registry:
    """Names -> registered objects (classes, functions or specs) of one kind.

    ``kind`` says what the entries are (for messages), ``group`` is the config group that selects them, ``key`` the
    config key holding the name (``classifier: {kind: logreg, ...}``), ``package`` the module or package whose
    modules are imported to fill the registry.
    """

    def __init__(self, kind: str, group: str, *, key: str = "name", package: str | None = None,
                 specs: bool = False):
        self.kind = kind
        self.group = group
        self.key = key
        self.package = package
        self.specs = specs  # entries are specs read from the group's YAMLs, not code
        self._entries: dict[str, Any] = {}
        self._loaders: list[Callable[[], None]] = []
        self._discovered = False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={self.names()})"

    # -- filling ---------------------------------------------------------------------------------------------------

    def register(self, name: str, name_attr: str | None = None) -> Callable[[_T], _T]:
        """Decorator: register ``obj`` under ``name`` (refused if another object holds that name); ``name_attr``
        also stores the name on it (a detector's ``kind``, a family's ``name``)."""

        def wrap(obj: _T) -> _T:
            self.add(name, obj)
            if name_attr:
                setattr(obj, name_attr, name)
            return obj

        return wrap

    def add(self, name: str, obj: Any) -> None:
        held = self._entries.get(name)
        if held is not None and held is not obj and _where(held) != _where(obj):
            raise ValueError(f"{self.kind} {name!r} is already registered ({_where(held)}); pick another name")
        self._entries[name] = obj

    def add_loader(self, load: Callable[[], None]) -> None:
        """Run ``load()`` (which registers entries, e.g. from YAML files) whenever the registry discovers."""
        self._loaders.append(load)
        self._discovered = False

    def discover(self) -> None:
        """Import every module of the package and run the loaders; new modules are picked up on a later call."""
        if self.package:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        for load in self._loaders:
            load()
        self._discovered = True

    def _ensure(self) -> None:
        if not self._discovered:
            self.discover()

    def declared_names(self) -> list[str]:
        """The names :meth:`names` gives, read from the source (``register...("<name>")`` decorators in the package,
        or the group's YAMLs for specs) without importing anything: for ``negate --help``, which must stay instant."""
        if self.specs:
            from negate.paths import CONFIG_DIR

            return sorted(p.stem for p in (Path(CONFIG_DIR) / self.group).glob("*.yaml") if p.stem != "none")
        root = Path(__file__).resolve().parent.parent / Path(*(self.package or "").split("."))
        files = sorted(root.glob("*.py")) if root.is_dir() else [root.with_suffix(".py")]
        names = set()
        for path in files:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                for dec in getattr(node, "decorator_list", ()):
                    callee = dec.func if isinstance(dec, ast.Call) else None
                    called = getattr(callee, "attr", None) or getattr(callee, "id", None) or ""
                    if called.startswith("register") and dec.args and isinstance(dec.args[0], ast.Constant):
                        names.add(str(dec.args[0].value))
        return sorted(names)

    # -- lookup ----------------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        self._ensure()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._ensure()
        if name not in self._entries:
            self.discover()  # a module added since the first look
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Any]]:
        self._ensure()
        return sorted(self._entries.items())

    def get(self, name: str) -> Any:
        if name not in self:
            raise KeyError(self.unknown(name))
        return self._entries[name]

    def unknown(self, name: Any) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r} ({self.group}=...){hint} Known: {', '.join(known) or 'none'}"

    def name_of_target(self, target: str) -> str | None:
        """The registered name of a Hydra-style dotted path (``negate.classifiers.LogRegDetector``), else None.

        Configs and model folders written before the registry named things this way; the path is only compared with
        the registered objects, never imported.
        """
        self._ensure()
        for name, obj in self._entries.items():
            qual = getattr(obj, "__qualname__", None)
            if qual is None:
                continue
            package = obj.__module__.rsplit(".", 1)[0]
            if target in (f"{obj.__module__}.{qual}", f"{package}.{qual}"):
                return name
        return None

    # -- building --------------------------------------------------------------------------------------------------

    def select(self, cfg: str | Mapping | Any) -> tuple[str, dict]:
        """``(name, remaining options)`` of a name or config: the name from ``cfg[key]`` (or from a legacy
        ``_target_`` naming a registered object)."""
        if isinstance(cfg, str):
            return cfg, {}
        options = plain(cfg)
        target = options.pop("_target_", None)
        name = options.pop(self.key, None)
        if target is not None:
            by_target = self.name_of_target(str(target))
            if by_target is None or (name is not None and name != by_target):
                raise ValueError(f"{self.group}: _target_ {target!r} is not a registered {self.kind}")
            name = by_target
        if has_target(options):
            raise ValueError(f"{self.group}: nested _target_ entries are not allowed")
        if name is None:
            raise ValueError(f"a {self.group} config needs `{self.key}: <name>`; known: {', '.join(self.names())}")
        return str(name), options

    def build(self, cfg: str | Mapping | Any, **kwargs: Any) -> Any:
        """Call the registered object with the config's options (``kwargs`` win)."""
        name, options = self.select(cfg)
        return self.get(name)(**{**options, **kwargs})


def specs_from_config_group(registry: Registry, spec_type: type) -> Callable[[], None]:
    """A loader registering one ``spec_type`` dataclass per ``configs/<group>/<name>.yaml`` (``none`` = off): the
    YAML is the single source of truth of what a name means; keys that are not spec fields (run-time options,
    documented values the model checks) stay in the YAML for the composed config."""

    def load() -> None:
        import dataclasses
        from pathlib import Path

        import yaml

        from negate.paths import CONFIG_DIR

        fields = {f.name for f in dataclasses.fields(spec_type)}
        for path in sorted((Path(CONFIG_DIR) / registry.group).glob("*.yaml")):
            if path.stem == "none":
                continue
            cfg = yaml.safe_load(path.read_text()) or {}
            if cfg.get("name") != path.stem:
                raise ValueError(f"{path}: `name: {cfg.get('name')}` differs from the file name {path.stem!r}")
            registry.add(path.stem, spec_type(**{k: v for k, v in cfg.items() if k in fields}))

    return load


def _where(obj: Any) -> str:
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qual}" if module and qual else repr(obj)


# One registry per pluggable kind. Config group, name key and the package whose modules register entries:
FEATURES = Registry("feature family", "feature", package="negate.features")
ENCODERS = Registry("encoder", "encoder", package="negate.models.encoders", specs=True)
AUTOENCODERS = Registry("autoencoder", "ae", package="negate.models.autoencoders", specs=True)
CLASSIFIERS = Registry("detector", "classifier", key="kind", package="negate.classifiers")
DATA_SOURCES = Registry("data source", "data", key="kind", package="negate.data.sources")
LOGGERS = Registry("run logger", "logger", key="kind", package="negate.loggers")
AUGMENTATIONS = Registry("augmentation", "augment", key="kind", package="negate.data.augment")

REGISTRIES: tuple[Registry, ...] = (FEATURES, ENCODERS, AUTOENCODERS, CLASSIFIERS, DATA_SOURCES, LOGGERS,
                                    AUGMENTATIONS)


def describe() -> list[str]:
    """One line per kind for ``negate --help``: ``"feature: aerecon, dct, ..."`` (config group: registered names),
    read from the source without importing torch and friends."""
    return [f"{r.group}: {', '.join(r.declared_names())}" for r in REGISTRIES]
