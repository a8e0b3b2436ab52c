"""Format-matched training fakes: each training fake re-saved the way a randomly drawn training real was saved.

In most collections the two classes differ in their files before anything else: the reals are camera JPEGs, the
fakes PNGs. A detector then reads "JPEG traces" as "real" and misses a generation that was saved as JPEG (under the
family protocol the shipped ensemble caught 13% of the held-out JPEG fakes against 45% of the PNG ones). Augmentation
applied to both classes cannot remove that cue: it compresses every image once more, so a real still carries one
compression more than a fake. Here each training fake, with probability ``share``, is re-saved with the JPEG
quantisation tables and chroma subsampling of a training real drawn for it (seeded by the fake's content hash); a
lossless real leaves the fake as it is. The classes then share one distribution of last saves, as B-Free (CVPR 2025)
and Aligned Datasets (ICLR 2025) make them share it. Training rows only: validation and test images are scored as
they are. Files are cached by the fake's and the real's content hashes, written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from negate.data.decode import DecodeError, decode_image, read_file_bytes, sha256_bytes
from negate.data.encode import save_like, write_bytes_atomic
from negate.data.index import file_format
from negate.data.patches import seed_from_key
from negate.data.records import ImageRecord

log = logging.getLogger(__name__)

def _jpeg_bytes(path: str) -> tuple[bytes, str] | None:
    """A real's bytes and their sha256 when it is a readable JPEG, else None."""
    if file_format(path) != "JPEG":
        return None
    try:
        data = read_file_bytes(path)
    except (DecodeError, OSError):
        return None
    return data, sha256_bytes(data)


def format_match_share(cfg) -> float:
    """``format_match.share`` of a composed config (0 when the block is absent: configs from before it existed)."""
    return float((cfg.get("format_match") or {}).get("share") or 0.0)


def format_matched(records: list[ImageRecord], share: float, cache_dir: str | Path, *, seed: int = 0,
                   max_pixels: int = 64_000_000) -> list[ImageRecord]:
    """``records`` with each fake (label 1) replaced, with probability ``share``, by a copy saved like a real of
    ``records``; reals and unchanged fakes are returned as they are, in the same order. An unreadable fake is kept
    (feature extraction reports it); an unreadable real is never drawn."""
    share = float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"format_match.share must lie in [0, 1], got {share}")
    reals = [r for r in records if r.label == 0]
    if share == 0.0 or not reals or not any(r.label == 1 for r in records):
        return list(records)
    folder = Path(cache_dir) / "format_matched"
    like_of: dict[str, tuple[bytes, str] | None] = {}  # a drawn real's bytes and digest; None: lossless or unreadable
    out, changed = [], 0
    for record in records:
        if record.label != 1:
            out.append(record)
            continue
        try:
            data = read_file_bytes(record.path)
        except (DecodeError, OSError):
            out.append(record)
            continue
        digest = sha256_bytes(data)
        rng = np.random.default_rng(seed_from_key(f"{digest}|format_match|{seed}"))
        if rng.random() >= share:
            out.append(record)
            continue
        real = reals[int(rng.integers(len(reals)))]
        if real.path not in like_of:
            like_of[real.path] = _jpeg_bytes(real.path)
        if like_of[real.path] is None:  # a lossless real: the fake stays as it was saved
            out.append(record)
            continue
        like, like_digest = like_of[real.path]
        path = folder / f"{digest}_{like_digest[:16]}.jpg"
        if not path.is_file():
            try:
                encoded, ext = save_like(decode_image(data, max_pixels), like)
            except DecodeError:
                out.append(record)
                continue
            if ext != "jpg":  # a JPEG without quantisation tables: nothing to match
                out.append(record)
                continue
            write_bytes_atomic(path, encoded)
        changed += 1
        out.append(dataclasses.replace(record, path=str(path), extra={**record.extra, "format_matched_from": record.path}))
    log.info("format match: %d of %d training fakes re-saved like a training real (%s)", changed,
             sum(r.label == 1 for r in records), folder)
    return out
