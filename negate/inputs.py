"""What ``negate infer PATH...`` scores: any number of files, folders and globs, each image once.

Folders are scanned recursively (``negate.data.scan``); a path that does not exist but holds ``*``, ``?`` or ``[`` is
expanded as a glob (``**`` recurses), so quoted globs work like the shell's. Images are deduplicated by their resolved
path (``a.jpg ./a.jpg``, a file and its folder, two symlinks to one file): the first spelling is kept. Inputs that
cannot be scored (missing, no glob match, skipped while scanning) stay in the list with their reason, in order.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from negate.data.scan import scan_images

GLOB_CHARS = frozenset("*?[")


def as_paths(value) -> list[str]:
    """A config's ``path``: None, one string, or a list of strings."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """``(path, reason)`` per input in order: ``reason`` is "" for an image to score, else why it is skipped."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str | Path, reason: str = "") -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        out.append((str(path), reason))

    def add_any(path: Path) -> None:
        if path.is_dir():
            result = scan_images(path)
            merged = sorted([(f, "") for f in result.files] + [(p, r) for p, r in result.skipped], key=lambda t: str(t[0]))
            for file, reason in merged:
                add(file, reason)
        else:
            add(path)

    for given in paths:
        text = str(given)
        path = Path(text)
        if path.exists() or path.is_symlink():
            add_any(path)
        elif GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            for match in matches:
                add_any(Path(match))
            if not matches:
                add(text, "no file matches this pattern")
        else:
            add(text, "no such file or folder")
    return out
