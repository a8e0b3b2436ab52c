"""On-disk feature cache: one folder per (feature family config, patch config, code version), rows keyed by
``<sha256 of file bytes>|<view>``.

Rows are written in shards (``.npz``, no pickle) through a temporary file and an atomic ``os.replace``, so a killed
process leaves either a whole shard or none, and two processes writing at once never touch the same file. A row
found in several shards (two writers raced) is read once. Decode failures are cached the same way, in ``_failures``,
so a re-run does not retry files it already knows are bad. Reading a folder costs one pass over its shards; the
images themselves are never held.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FAILURES = "_failures"


def config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def family_folder(root: str | Path, family_name: str, family_config: dict, patch_config: dict) -> Path:
    key = config_hash({"family": family_config, "patches": patch_config})
    return Path(root) / f"{family_name}-{key}"


class CacheWriteError(OSError):
    """The feature cache folder (``paths.cache_dir``) cannot be created or written."""


def _cannot_write(folder: Path, err: OSError, what: str = "feature cache folder",
                  setting: str = "paths.cache_dir") -> CacheWriteError:
    return CacheWriteError(f"cannot write the {what} {folder}: {err.strerror or err} "
                           f"(set {setting} to a writable folder)")


def ensure_writable(root: str | Path, what: str = "feature cache folder", setting: str = "paths.cache_dir") -> None:
    """Raise ``CacheWriteError`` now, before any image is processed, if ``root`` cannot hold new files."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _cannot_write(root, err, what, setting) from None


def _write_atomic(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder / f".{name}.tmp.npz"
    final = folder / f"{name}.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as err:  # an interrupt (SIGINT/SIGTERM) too: no temporary file is left behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _cannot_write(folder, err) from err
        raise
    return final


def _read_shard(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        log.warning("ignoring unreadable cache shard %s (%s)", path, err)
        return None


class FeatureStore:
    """Read/append rows of one family folder."""

    def __init__(self, folder: str | Path, names: list[str] | None = None, meta: dict | None = None):
        self.folder = Path(folder)
        self.names = names
        self.meta = meta or {}
        self._rows: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            rows: dict[str, np.ndarray] = {}
            for shard in sorted(self.folder.glob("shard-*.npz")):
                data = _read_shard(shard)
                if data is None or "keys" not in data or "values" not in data:
                    continue
                for key, value in zip(data["keys"].tolist(), data["values"]):
                    rows.setdefault(key, value)
            self._rows = rows
        return self._rows

    def refresh(self) -> None:
        self._rows = None

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def missing(self, keys: list[str]) -> list[str]:
        rows = self._load()
        return [k for k in keys if k not in rows]

    def get(self, keys: list[str]) -> np.ndarray:
        rows = self._load()
        return np.stack([rows[k] for k in keys]) if keys else np.zeros((0, len(self.names or [])), np.float32)

    def append(self, keys: list[str], values: np.ndarray) -> None:
        if not keys:
            return
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but {values.shape[0]} rows")
        self._write_meta()
        _write_atomic(self.folder, {"keys": np.asarray(keys, dtype=str), "values": values})
        if self._rows is not None:
            for key, value in zip(keys, values):
                self._rows.setdefault(key, value)

    def _write_meta(self) -> None:
        meta_path = self.folder / "family.json"
        if meta_path.exists():
            return
        tmp = self.folder / f".family.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"names": self.names, **self.meta}, indent=1, default=str))
            os.replace(tmp, meta_path)
        except BaseException as err:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if isinstance(err, OSError):
                raise _cannot_write(self.folder, err) from err
            raise


class FailureStore:
    """Keys that could not be decoded, with their one-line reason."""

    def __init__(self, root: str | Path):
        self.folder = Path(root) / FAILURES

    def load(self) -> dict[str, str]:
        reasons: dict[str, str] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            data = _read_shard(shard)
            if data is not None:
                reasons.update(zip(data["keys"].tolist(), data["reasons"].tolist()))
        return reasons

    def append(self, failed: list[tuple[str, str]]) -> None:
        if failed:
            keys, reasons = zip(*failed)
            _write_atomic(self.folder, {"keys": np.asarray(keys, dtype=str), "reasons": np.asarray(reasons, dtype=str)})
