"""What a dataset is to negate: a list of :class:`ImageRecord` rows, read from a labelled folder or a manifest.

Labels: 0 = real / human-made, 1 = synthetic. Manifests are CSV or TSV with at least ``path`` and ``label`` columns
(paths relative to the manifest); ``generator`` and ``source`` are optional. The ``source`` of a row is the group that
``split.group_by=source`` keeps together. With ``source_from=auto`` it is the manifest's ``source`` column when that
column names groups (at most half as many distinct values as rows), otherwise the first directory of the path — the
dev set's ``source`` column is per-file provenance, and its 29 sources are its top-level folders.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

REAL_LABELS = {"real", "human", "0", "photo", "authentic"}
FAKE_LABELS = {"fake", "synthetic", "ai", "1", "generated"}
SOURCE_FROM = ("auto", "column", "first_dir")


@dataclass(frozen=True)
class ImageRecord:
    path: str
    label: int | None = None
    generator: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def parse_label(value: str | int) -> int:
    """``real|human|0`` -> 0, ``fake|synthetic|ai|1`` -> 1 (case-insensitive); anything else is an error."""
    text = str(value).strip().lower()
    if text in REAL_LABELS:
        return 0
    if text in FAKE_LABELS:
        return 1
    raise ValueError(f"unknown label {value!r}: use one of {sorted(REAL_LABELS)} (human) or {sorted(FAKE_LABELS)} (synthetic)")


def load_manifest(path: str | Path, source_from: str = "auto") -> list[ImageRecord]:
    """Read a CSV/TSV manifest (delimiter sniffed from the extension and header)."""
    if source_from not in SOURCE_FROM:
        raise ValueError(f"source_from must be one of {SOURCE_FROM}, got {source_from!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    first_line = text.splitlines()[0] if text else ""
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in first_line else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    for needed in ("path", "label"):
        if needed not in columns:
            raise ValueError(f"manifest {path} needs a {needed!r} column; it has {list(columns)}")
    rows = list(reader)
    root = path.parent
    sources = [(r.get(columns.get("source", ""), "") or "").strip() for r in rows]
    use_column = "source" in columns and (
        source_from == "column" or (source_from == "auto" and len(set(sources)) <= max(1, len(rows) // 2))
    )
    records = []
    for line_no, (row, source) in enumerate(zip(rows, sources), start=2):
        rel = (row[columns["path"]] or "").strip()
        if not rel:
            raise ValueError(f"{path}:{line_no}: empty path")
        try:
            label = parse_label(row[columns["label"]])
        except ValueError as err:
            raise ValueError(f"{path}:{line_no}: {err}") from None
        if not use_column:
            source = Path(rel).parts[0] if len(Path(rel).parts) > 1 else ""
        generator = (row.get(columns.get("generator", ""), "") or "").strip()
        extra = {k: v for k, v in row.items() if k and k.strip().lower() not in ("path", "label", "generator", "source")}
        records.append(ImageRecord(str(root / rel), label, generator or ("real" if label == 0 else "unknown"), source, extra))
    return records


def load_folder(root: str | Path) -> tuple[list[ImageRecord], list[tuple[str, str]]]:
    """``root/real/**`` and ``root/fake/**`` (aliases accepted) -> records; unusable paths are returned as skipped."""
    from negate.data.scan import scan_labelled

    labelled, skipped = scan_labelled(root)
    records = []
    for file, label in labelled:
        rel = Path(file).relative_to(root)
        source = rel.parts[1] if len(rel.parts) > 2 else rel.parts[0]
        records.append(ImageRecord(str(file), label, "real" if label == 0 else "unknown", source))
    return records, [(str(p), reason) for p, reason in skipped]
