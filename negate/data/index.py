"""Hash every record's file once: the sha256 of the bytes is the feature-cache key."""

from __future__ import annotations

import logging

from negate.data.decode import DecodeError, read_file_bytes, sha256_bytes
from negate.data.records import ImageRecord

log = logging.getLogger(__name__)


def hash_records(records: list[ImageRecord]) -> tuple[list[str | None], dict[str, str]]:
    """sha256 of each record's file bytes (None where the file cannot be read) and the reasons for those; not logged
    here: the command that asked lists them once."""
    hashes: list[str | None] = []
    failed: dict[str, str] = {}
    for record in records:
        try:
            hashes.append(sha256_bytes(read_file_bytes(record.path)))
        except DecodeError as err:
            hashes.append(None)
            failed[record.path] = str(err)  # reported once, by the command (skipped.csv and its summary)
            log.debug("cannot read %s: %s", record.path, err)
    return hashes, failed



_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def file_format(path: str) -> str:
    """Container format from the file's first bytes (not its name): JPEG, PNG, WEBP, GIF, BMP, TIFF or other."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "unreadable"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), "other")
