"""``kind: folder``: a directory with ``real/`` and ``fake/`` subtrees (see :func:`negate.data.records.load_folder`)."""

from __future__ import annotations

from negate.data.records import ImageRecord, load_folder
from negate.plugins import DATA_SOURCES


@DATA_SOURCES.register("folder")
def folder_source(data_cfg) -> tuple[list[ImageRecord], dict[str, str]]:
    records, skipped = load_folder(data_cfg.get("path"))
    return records, dict(skipped)
