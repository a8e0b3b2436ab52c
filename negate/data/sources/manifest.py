"""``kind: manifest``: a CSV/TSV of path, label[, generator][, source] (see :func:`negate.data.records.load_manifest`)."""

from __future__ import annotations

from negate.data.records import ImageRecord, load_manifest
from negate.plugins import DATA_SOURCES


@DATA_SOURCES.register("manifest")
def manifest_source(data_cfg) -> tuple[list[ImageRecord], dict[str, str]]:
    return load_manifest(data_cfg.get("path"), data_cfg.get("source_from", "auto")), {}
