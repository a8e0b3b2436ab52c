"""The import structure: every module imports on its own, module-level imports form no cycle, and the layers only
import downwards (models below features, none of the building blocks import the command modules).

The graph is read statically (``ast``) from the source files, function-level (lazy) imports included for the layer
rules: a lazy upward import is still an upward dependency.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "negate"

# the commands and what assembles them; building blocks never import these
COMMAND_MODULES = {
    "negate.cli", "negate.entry", "negate.train", "negate.infer", "negate.evaluate", "negate.pretrain",
    "negate.provenance_cmd", "negate.recipe", "negate.pipeline",
}
BUILDING_BLOCKS = ("negate.features", "negate.models", "negate.classifiers", "negate.data", "negate.loggers")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The negate module an imported name refers to (``negate.features.dct``, or the package holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, bool]]:
    """``(imported negate module, at module level?)`` for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                names = [f"{base}.{a.name}" for a in child.names]
            else:
                lazy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, top and not lazy)
                continue
            for name in names:
                target = resolve(name) if name.startswith("negate") else None
                if target and target != module:
                    found.append((target, top))

    visit(tree, True)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_models_never_import_features():
    bad = [(m, t) for m, edges in GRAPH.items() if m.startswith("negate.models")
           for t, _ in edges if t.startswith("negate.features")]
    assert not bad, bad


@pytest.mark.parametrize("layer", BUILDING_BLOCKS)
def test_building_blocks_never_import_the_commands(layer):
    bad = [(m, t) for m, edges in GRAPH.items() if m == layer or m.startswith(layer + ".")
           for t, _ in edges if t in COMMAND_MODULES]
    assert not bad, bad


def test_the_plugin_registry_is_a_leaf():
    assert [t for t, top in GRAPH["negate.plugins"] if top] == []


def test_module_level_imports_have_no_cycle():
    edges = {m: sorted({t for t, top in GRAPH[m] if top}) for m in MODULES}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (cycle := walk(t)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in MODULES:
        if m not in state:
            cycle = walk(m)
            assert cycle is None, " -> ".join(cycle)


# Import each module in a fresh interpreter state. Third-party libraries are imported once and each module is then
# imported in a forked child, which holds none of negate's modules: an import that only works after some other negate
# module was imported first fails here.
_FORK_IMPORTS = r"""
import importlib, json, os, sys, traceback
for lib in ("numpy", "torch", "timm", "lightning", "hydra", "omegaconf", "sklearn", "xgboost", "PIL", "yaml",
            "safetensors", "scipy", "matplotlib"):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert not any(m == "negate" or m.startswith("negate.") for m in sys.modules)
results = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = ""
        except BaseException:
            message = traceback.format_exc()
        os.write(write, message.encode()[-4000:])
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    results[name] = b"".join(chunks).decode()
print(json.dumps(results))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_in_isolation():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _FORK_IMPORTS, *MODULES], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == set(MODULES)
    failed = {name: err for name, err in results.items() if err}
    assert not failed, "\n\n".join(f"{name}:\n{err}" for name, err in failed.items())
