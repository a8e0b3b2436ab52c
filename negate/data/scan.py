"""Find image files under a folder without hanging, recursing forever or silently dropping files.

The walk is iterative, visits entries in sorted order and returns sorted paths, so two scans of the same tree give
the same list. Symlinks are followed by default; every real directory is entered once (tracked by device+inode), so
symlink loops end and a file reachable through two links is listed once (the first path in sorted order wins).
Anything with an image extension that cannot be an image file (dangling or looping symlink, a directory named
``x.jpg``, a FIFO, macOS ``._`` metadata) is reported in ``ScanResult.skipped`` with a reason, as is every directory
that cannot be listed. Files without an image extension are ignored silently. Files are not opened here: unreadable or
corrupt images are found by ``decode_image``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from negate.data.decode import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

LABEL_ALIASES: dict[str, int] = {"real": 0, "human": 0, "fake": 1, "synthetic": 1, "ai": 1}


@dataclass
class ScanResult:
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _normalise_extensions(extensions) -> frozenset[str]:
    if isinstance(extensions, str):
        extensions = [extensions]
    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _broken_link_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(err, FileNotFoundError):
        return "dangling symlink (target missing)"
    return f"cannot follow symlink: {err.strerror or err}"


def scan_images(root, extensions=IMAGE_EXTENSIONS, follow_symlinks: bool = True) -> ScanResult:
    """All files under ``root`` (any depth) whose suffix is in ``extensions`` (case-insensitive, dot optional)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} is not a directory")
    exts = _normalise_extensions(extensions)
    result = ScanResult()
    root_st = root.stat()
    seen_dirs = {(root_st.st_dev, root_st.st_ino)}
    seen_files: dict[tuple[int, int], Path] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            result.skipped.append((directory, f"cannot list directory: {e.strerror or e}"))
            continue
        subdirs = []
        for entry in entries:
            path = Path(entry.path)
            is_image_name = path.suffix.lower() in exts
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                if is_image_name:
                    result.skipped.append((path, "symlink not followed (follow_symlinks=False)"))
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as e:
                if is_link:
                    result.skipped.append((path, _broken_link_reason(e)))
                else:
                    result.skipped.append((path, f"cannot stat: {e.strerror or e}"))
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if is_image_name:
                    result.skipped.append((path, "a directory with an image extension (scanned as a folder)"))
                if key in seen_dirs:
                    if is_link:
                        result.skipped.append((path, "symlink to a directory already scanned (loop or duplicate)"))
                    continue
                seen_dirs.add(key)
                subdirs.append(path)
            elif is_image_name:
                if not stat.S_ISREG(st.st_mode):
                    result.skipped.append((path, "not a regular file (FIFO, socket or device)"))
                elif path.name.startswith("._"):
                    result.skipped.append((path, "macOS AppleDouble metadata file, not an image"))
                elif key in seen_files:
                    result.skipped.append((path, f"same file as {seen_files[key]}"))
                else:
                    seen_files[key] = path
                    result.files.append(path)
        stack.extend(reversed(subdirs))  # depth-first in sorted order, so duplicate resolution is deterministic
    result.files.sort()
    return result


def _label_dirs(root: Path) -> list[tuple[Path, int]]:
    found = []
    for child in sorted(root.iterdir()):
        label = LABEL_ALIASES.get(child.name.lower())
        if label is not None and child.is_dir():
            found.append((child, label))
    return found


def scan_labelled(root, extensions=IMAGE_EXTENSIONS) -> tuple[list[tuple[Path, int]], list[tuple[Path, str]]]:
    """``data=folder`` layout: images under ``real/`` get label 0, under ``fake/`` label 1.

    Aliases (case-insensitive): ``human/`` for real, ``synthetic/`` and ``ai/`` for fake. One class alone is allowed
    (e.g. scoring a folder of photos); neither is an error. A file linked into both classes is an error; one linked
    under two aliases of the same class is listed once.
    Returns ``(items, skipped)``; the command that asked reports the skipped entries (once, with its summary).
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"data folder {root} does not exist or is not a directory")
    label_dirs = _label_dirs(root)
    if not label_dirs:
        present = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:10]
        raise ValueError(
            f"data folder {root} needs a real/ (label 0) and/or fake/ (label 1) subfolder "
            f"(aliases: human/; synthetic/, ai/), found: {present or 'nothing'}"
        )
    items: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    labels_by_file: dict[Path, int] = {}
    for directory, label in label_dirs:
        scanned = scan_images(directory, extensions)
        skipped.extend(scanned.skipped)
        for path in scanned.files:
            real = path.resolve()
            if real in labels_by_file:
                if labels_by_file[real] != label:
                    raise ValueError(f"{path} is the same file as one labelled {labels_by_file[real]} (linked into both)")
                skipped.append((path, "same file already listed under another alias folder"))
                continue
            labels_by_file[real] = label
            items.append((path, label))
    items.sort()
    return items, skipped


def scan_labelled_folder(root, extensions=IMAGE_EXTENSIONS) -> list[tuple[Path, int]]:
    """The labelled images of :func:`scan_labelled`, without the skipped entries."""
    return scan_labelled(root, extensions)[0]
