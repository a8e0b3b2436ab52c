"""Which model folder ``ckpt=`` names, from any directory.

- an existing path: that folder;
- ``shipped``: the pretrained model shipped inside the package (``negate/shipped_model``);
- ``latest`` (the default): the newest model folder registered under ``$NEGATE_HOME/models`` (where ``negate train``
  writes them) or, for folders trained before ``NEGATE_HOME`` existed, under ``outputs/models`` of the current
  directory; when there is none, the shipped model; else a one-line error;
- any other bare name: ``$NEGATE_HOME/models/<name>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from negate.model_folder import MODEL_JSON, ModelFolderError
from negate.paths import SHIPPED_MODEL_DIR

SHIPPED = "shipped"
LATEST = "latest"


def model_roots(cfg) -> list[Path]:
    """Where a config looks for registered models: ``paths.models_dir`` (``$NEGATE_HOME/models`` by default), then the
    legacy ``<paths.output_dir>/models``."""
    roots = [Path(cfg.paths.models_dir).expanduser(), Path(cfg.paths.output_dir).expanduser() / "models"]
    return list(dict.fromkeys(roots))


def registered(roots: Sequence[str | Path]) -> list[Path]:
    """Model folders (those holding a ``model.json``) directly under any of ``roots``, oldest first."""
    found = []
    for root in map(Path, roots):
        if root.is_dir():
            found += [p for p in root.iterdir() if (p / MODEL_JSON).is_file()]
    return sorted(found, key=lambda p: ((p / MODEL_JSON).stat().st_mtime, p.name))


def _is_bare_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and not text.startswith((".", "~"))


def resolve_ckpt(ckpt: str | Path, roots: str | Path | Sequence[str | Path],
                 shipped: Path | None = SHIPPED_MODEL_DIR) -> Path:
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    text = str(ckpt).strip()
    if text == LATEST:
        models = registered(roots)
        if models:
            return models[-1]
        if shipped is not None and (shipped / MODEL_JSON).is_file():
            return shipped
        where = " or ".join(str(r) for r in roots)
        raise ModelFolderError(f"no trained model under {where}: run `negate train` first or pass ckpt=PATH")
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text == SHIPPED:
        if shipped is not None and shipped.is_dir():
            return shipped
        raise ModelFolderError(f"this installation has no shipped model ({shipped} is missing): "
                               "run `negate train` or pass ckpt=PATH")
    if _is_bare_name(text):
        for root in map(Path, roots):
            if (root / text).is_dir():
                return root / text
        names = sorted({p.name for p in registered(roots)})
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known: {', '.join(names[-5:])}" if names else "")
        raise ModelFolderError(f"no model named {text!r} under {roots[0]}{hint} (ckpt= takes a folder, a name, "
                               "latest or shipped)")
    return path
