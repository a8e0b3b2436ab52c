"""On-disk feature cache: one folder per (feature family config, patch config, code version), rows keyed by
``<sha256 of file bytes>|<view>``.

Rows are written in shards (``.npz``, no pickle) through a temporary file and an atomic ``os.replace``, so a killed
process leaves either a whole shard or none, and two processes writing at once never touch the same file. A row
found in several shards (two writers raced) is read once. Decode failures are cached the same way, in ``_failures``,
so a re-run does not retry files it already knows are bad. The images themselves are never held.

Lookups go through an index, so scoring a few images costs about the same whether a folder holds a thousand rows or
a hundred thousand (``scripts/bench_cache.py``). ``index.npz`` in each folder holds the keys it covers, sorted (as
bytes), where each lies (shard, row), and the names of the shards it covers. A reader lists the folder's file names,
binary-searches the index through a memory map (only the pages it touches are read) and reads the ``keys`` of the
few shards the index does not cover (written since, or before the index existed); entries of shards that are gone
are skipped. Rows are then read in place from the uncompressed ``.npz`` members, one small read per wanted row
(or run of nearby rows), only in the shards that hold them, each checked against its key; a mismatch makes the
reader look again without the index. Writers only ever add shards. A reader that finds ``CONSOLIDATE_AFTER``
uncovered shards, or covered shards gone, writes a new index (temporary file + ``os.replace``): the index is never
half written, and since it names the shards it covers, an old, missing or racing index only makes readers read a
few more key lists, never lose a row. A folder that cannot be written is read correctly, without a new index. The
one cost left that grows with a folder is listing its file names, one per shard of ``extract.shard_rows`` rows.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import mmap
import os
import struct
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FAILURES = "_failures"
INDEX = "index.npz"
CONSOLIDATE_AFTER = 8  # shards the index may miss before a reader rewrites it


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


def _write_atomic(folder: Path, arrays: dict[str, np.ndarray], final_name: str | None = None) -> Path:
    """Write ``arrays`` as ``final_name`` (default: a new uniquely named shard) in one ``os.replace``."""
    name = f"{Path(final_name).stem if final_name else 'shard'}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder / f".{name}.tmp.npz"
    final = folder / (final_name or f"{name}.npz")
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


# What a shard or index that cannot be used raises.
_UNREADABLE = (OSError, ValueError, zipfile.BadZipFile, EOFError)


class _NotInPlace(Exception):
    """The ``.npz`` is not laid out as ``np.savez`` writes it (compressed, say): it is read through ``zipfile``."""


@dataclass(frozen=True)
class _Stored:
    """One ``.npy`` member of an ``.npz``, stored uncompressed: dtype, shape and where its C-ordered data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    row_bytes: int

    def read(self, fd: int, first: int, count: int) -> np.ndarray:
        data = os.pread(fd, count * self.row_bytes, self.offset + first * self.row_bytes)
        if len(data) != count * self.row_bytes:
            raise EOFError("file shorter than its header says")
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])

    def take(self, fd: int, rows: list[int]) -> np.ndarray:
        """Rows ``rows`` (in range): one read when they lie close together, else one read per row."""
        lo, hi = min(rows), max(rows)
        if hi - lo < 4 * len(rows):
            return self.read(fd, lo, hi - lo + 1)[[r - lo for r in rows]]
        return np.concatenate([self.read(fd, r, 1) for r in rows])

    def view(self, mapped: mmap.mmap) -> np.ndarray:
        """The member inside a memory map of its file: only the pages used are read."""
        count = math.prod(self.shape)
        if self.offset + count * self.dtype.itemsize > len(mapped):
            raise EOFError("file shorter than its header says")
        return np.frombuffer(mapped, self.dtype, count, self.offset).reshape(self.shape)


@functools.lru_cache(maxsize=1024)
def _npy_header(version: int, header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """Parsed once per process: the shards of a folder share a handful of headers."""
    read = np.lib.format.read_array_header_1_0 if version == 1 else np.lib.format.read_array_header_2_0
    size = struct.pack("<H" if version == 1 else "<I", len(header))
    shape, fortran_order, dtype = read(io.BytesIO(size + header))
    return dtype, shape, fortran_order


def _stored_members(fd: int) -> dict[str, _Stored]:
    """The members of an ``.npz`` as ``np.savez`` writes it, found by walking its local headers up to the central
    directory: a few small reads, cheaper than ``zipfile``. A file cut short lacks the end record that closes every
    zip file, so it is caught. Raises ``_NotInPlace`` on anything else."""
    size = os.fstat(fd).st_size
    if size < 22 or os.pread(fd, 4, size - 22) != b"PK\x05\x06":  # np.savez writes no archive comment
        raise _NotInPlace
    members: dict[str, _Stored] = {}
    offset = 0
    while True:
        head = os.pread(fd, 512, offset)  # local header, name, extra field and .npy header, mostly
        if head[:4] == b"PK\x01\x02" and members:
            return members
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise _NotInPlace
        flags, method = struct.unpack("<HH", head[6:10])
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        if method != zipfile.ZIP_STORED or flags & 0x08:  # compressed, or sizes in a trailing data descriptor
            raise _NotInPlace
        name = head[30:30 + name_len].decode(errors="replace")
        start = offset + 30 + name_len + extra_len
        npy = os.pread(fd, 512, start) if start + 12 > offset + len(head) else head[start - offset:]
        version, size_len = npy[6:7], (2 if npy[6:7] == b"\x01" else 4)
        if npy[:6] != b"\x93NUMPY" or version not in (b"\x01", b"\x02") or len(npy) < 8 + size_len:
            raise _NotInPlace
        if not name.endswith(".npy"):
            raise _NotInPlace
        (header_len,) = struct.unpack("<H" if size_len == 2 else "<I", npy[8:8 + size_len])
        data_start = start + 8 + size_len + header_len
        header = npy[8 + size_len:8 + size_len + header_len]
        if len(header) < header_len:
            header = os.pread(fd, header_len, start + 8 + size_len)
        try:
            dtype, shape, fortran_order = _npy_header(version[0], header)
        except Exception as err:  # noqa: BLE001  (a header cut short fails inside numpy's parser in many ways)
            raise _NotInPlace from err
        if fortran_order or dtype.hasobject:
            raise _NotInPlace
        members[name[: -len(".npy")]] = _Stored(dtype, shape, data_start, dtype.itemsize * math.prod(shape[1:]))
        offset = data_start + dtype.itemsize * math.prod(shape)


class _Npz:
    """An open ``.npz`` (a context manager): the length of its members, and rows of them read without the rest.
    Raises one of ``_UNREADABLE`` when the file is not a whole ``.npz`` or lacks a member asked for."""

    def __init__(self, path: str | Path, names: tuple[str, ...]):
        self.loaded: dict[str, np.ndarray] = {}
        self.stored: dict[str, _Stored] = {}
        self._mapped: mmap.mmap | None = None
        self.fd = os.open(path, os.O_RDONLY)
        try:
            try:
                self.stored = _stored_members(self.fd)
            except _NotInPlace:
                with os.fdopen(os.dup(self.fd), "rb") as fh, zipfile.ZipFile(fh) as zf:
                    for name in names:
                        if f"{name}.npy" in zf.namelist():
                            with zf.open(f"{name}.npy") as stream:
                                self.loaded[name] = np.lib.format.read_array(stream, allow_pickle=False)
            for name in names:
                if name not in self.stored and name not in self.loaded:
                    raise ValueError(f"no {name!r} array")
                if not (self.stored[name].shape if name in self.stored else self.loaded[name].shape):
                    raise ValueError(f"{name!r} is not an array of rows")
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> _Npz:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    def length(self, name: str) -> int:
        return (self.stored[name].shape if name in self.stored else self.loaded[name].shape)[0]

    def rows(self, name: str, rows: list[int]) -> np.ndarray:
        return self.stored[name].take(self.fd, rows) if name in self.stored else self.loaded[name][rows]

    def first(self, name: str, count: int) -> np.ndarray:
        return self.stored[name].read(self.fd, 0, count) if name in self.stored else self.loaded[name][:count]

    def whole(self, name: str) -> np.ndarray:
        """Memory-mapped when stored in place: only the pages used are read."""
        if name not in self.stored:
            return self.loaded[name]
        if self._mapped is None:  # mapped through this open file: a file replaced meanwhile is not mixed in
            self._mapped = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
        return self.stored[name].view(self._mapped)


def _is_shard(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".npz")


def _list_folder(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _shard_keys(path: Path, member: str) -> list[str] | None:
    """Keys of a shard that have a row of ``member``; None if the shard is unreadable."""
    try:
        with _Npz(path, ("keys", member)) as npz:
            n = min(npz.length("keys"), npz.length(member))
            return npz.first("keys", n).tolist()
    except _UNREADABLE as err:
        log.warning("ignoring unreadable cache shard %s (%s)", path, err)
        return None


def _encode(keys: list[str]) -> np.ndarray:
    return np.array([_utf8(k) for k in keys], dtype=bytes) if keys else np.zeros(0, "S1")


def _utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


@dataclass
class _Index:
    """A folder's ``index.npz`` (see ``_View.consolidated``): ``keys`` sorted, row ``i`` of ``where`` is the
    (position in ``shards``, row) of ``keys[i]``; a key written to two shards has two entries."""

    shards: list[str]
    keys: np.ndarray
    where: np.ndarray

    def lookup(self, keys: list[str]) -> list[list[tuple[str, int]]]:
        """Every (shard, row) recorded for each key."""
        width, n = self.keys.dtype.itemsize, len(self.keys)
        wanted = [_utf8(k) for k in keys]
        # a key wider than every indexed one cannot be there; searching for it would copy the index to a wider dtype
        needles = np.array([w if len(w) <= width else b"" for w in wanted], dtype=self.keys.dtype)
        found = []
        for w, i in zip(wanted, np.searchsorted(self.keys, needles).tolist()):
            places = []
            while i < n and len(w) <= width and self.keys[i] == w:  # a key written twice has adjacent entries
                s, r = self.where[i].tolist()
                if 0 <= s < len(self.shards):
                    places.append((self.shards[s], r))
                i += 1
            found.append(places)
        return found


def _read_index(folder: Path) -> _Index | None:
    path = folder / INDEX
    try:
        with _Npz(path, ("shards", "keys", "where")) as npz:
            shards, keys, where = npz.whole("shards"), npz.whole("keys"), npz.whole("where")
        if (shards.ndim != 1 or shards.dtype.kind != "U" or keys.ndim != 1 or keys.dtype.kind != "S"
                or where.shape != (len(keys), 2) or where.dtype.kind not in "iu"):
            raise ValueError("malformed index")
        return _Index(shards.tolist(), keys, where)
    except FileNotFoundError:
        return None
    except _UNREADABLE as err:
        log.warning("ignoring unreadable cache index %s (%s); it will be rebuilt", path, err)
        return None


class _View:
    """What one reader sees of a folder of shards: the names present when it looked, the index, and the keys of
    the shards present that the index does not cover."""

    def __init__(self, folder: Path, member: str, use_index: bool = True):
        self.folder = folder
        self.member = member
        self.live = _list_folder(folder)  # every name, not only shards: filtering them all costs as much as the index
        self.index = _read_index(folder) if use_index else None
        self.index_ignored = not use_index
        covered = set(self.index.shards) if self.index else set()
        self.gone = covered - self.live
        self.uncovered: dict[str, list[str]] = {}
        self.broken: list[str] = []
        self.extra: dict[str, tuple[str, int]] = {}
        for name in sorted(n for n in self.live - covered if _is_shard(n)):
            keys = _shard_keys(folder / name, member)
            if keys is None:
                self.broken.append(name)
                continue
            self.uncovered[name] = keys
            for row, key in enumerate(keys):
                self.extra.setdefault(key, (name, row))
        self._memo: dict[str, tuple[str, int] | None] = {}

    def locate(self, keys: list[str]) -> list[tuple[str, int] | None]:
        """(shard, row) of each key, None for a key no present shard holds."""
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            indexed = self.index.lookup(todo) if self.index else [[] for _ in todo]
            for key, places in zip(todo, indexed):
                live = [p for p in places if p[0] in self.live]
                self._memo[key] = live[0] if live else self.extra.get(key)
        return [self._memo[k] for k in keys]

    def add(self, shard: str, keys: list[str]) -> None:
        """A shard this process has just written."""
        self.live.add(shard)
        self.uncovered[shard] = keys
        for row, key in enumerate(keys):
            self.extra.setdefault(key, (shard, row))
            if self._memo.get(key, ()) is None:
                del self._memo[key]

    def stale(self) -> bool:
        return len(self.uncovered) >= CONSOLIDATE_AFTER or bool(self.gone) or self.index_ignored

    def consolidated(self) -> dict[str, np.ndarray]:
        """The arrays of an index covering every present shard."""
        old = self.index
        shards = sorted((set(old.shards) & self.live if old else set()) | set(self.uncovered))
        position = {name: i for i, name in enumerate(shards)}
        keys, where = [np.zeros(0, "S1")], [np.zeros((0, 2), np.int64)]
        if old is not None:
            moved = np.array([position.get(name, -1) for name in old.shards] + [-1], np.int64)
            old_where = np.asarray(old.where, np.int64)
            shard = moved[np.where((old_where[:, 0] >= 0) & (old_where[:, 0] < len(old.shards)), old_where[:, 0], -1)]
            kept = shard >= 0
            keys.append(np.asarray(old.keys)[kept])
            where.append(np.stack([shard[kept], old_where[kept, 1]], axis=1))
        for name, shard_keys in self.uncovered.items():
            keys.append(_encode(shard_keys))
            where.append(np.stack([np.full(len(shard_keys), position[name]), np.arange(len(shard_keys))], axis=1))
        all_keys, all_where = np.concatenate(keys), np.concatenate(where)
        order = np.argsort(all_keys, kind="stable")
        return {"shards": np.asarray(shards, dtype=str).reshape(-1), "keys": all_keys[order], "where": all_where[order]}


class _StaleView(Exception):
    """The index names a row that its shard does not hold, or a shard that is gone."""


class _ShardFolder:
    """Rows of one member (``values``, ``reasons``) of a folder of shards, found through the folder's index."""

    def __init__(self, folder: Path, member: str):
        self.folder = folder
        self.member = member
        self._view: _View | None = None

    def view(self, use_index: bool = True) -> _View:
        if self._view is None:
            self._view = _View(self.folder, self.member, use_index)
            if self._view.stale():
                self._write_index(self._view)
        return self._view

    def refresh(self) -> None:
        self._view = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_view": None}  # not the mapped index and memo: a spawned process looks again

    def _write_index(self, view: _View) -> None:
        if not os.access(self.folder, os.W_OK):
            return  # a shared read-only cache is still read correctly, only without a fresh index
        try:
            _write_atomic(self.folder, view.consolidated(), INDEX)
        except OSError as err:
            log.debug("cache index of %s not rewritten: %s", self.folder, err)

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        shard = _write_atomic(self.folder, arrays)
        if self._view is not None:
            self._view.add(shard.name, arrays["keys"].tolist())

    def rows(self, keys: list[str]) -> np.ndarray:
        """Rows of ``keys`` in order; KeyError for a key no shard holds."""
        try:
            return self._read(keys)
        except (_StaleView, *_UNREADABLE) as err:
            # a shard went away since the folder was listed, or the index names rows a shard does not hold: look
            # again, once, reading the keys of every shard (and rewriting the index from them)
            log.warning("re-reading the cache folder %s without its index (%s)", self.folder, err)
            self.refresh()
            self.view(use_index=False)
            try:
                return self._read(keys)
            except (_StaleView, *_UNREADABLE) as again:
                raise KeyError(f"{keys[0]}...: unreadable cache rows in {self.folder} ({again})") from again

    def _read(self, keys: list[str]) -> np.ndarray:
        places = self.view().locate(keys)
        if None in places:
            raise KeyError(keys[places.index(None)])
        by_shard: dict[str, list[int]] = {}
        for i, place in enumerate(places):
            by_shard.setdefault(place[0], []).append(i)
        out = None
        for shard, positions in by_shard.items():
            rows = [places[i][1] for i in positions]
            values = self._shard_rows(shard, rows, [keys[i] for i in positions])
            if out is None:
                out = np.empty((len(keys), *values.shape[1:]), values.dtype)
            out[positions] = values
        return out

    def _shard_rows(self, shard: str, rows: list[int], keys: list[str]) -> np.ndarray:
        with _Npz(os.path.join(self.folder, shard), ("keys", self.member)) as npz:
            if min(rows) < 0 or max(rows) >= min(npz.length("keys"), npz.length(self.member)):
                raise _StaleView(f"{shard} has fewer rows than its index names")
            if npz.rows("keys", rows).tolist() != keys:
                raise _StaleView(f"{shard} does not hold the rows its index names")
            return npz.rows(self.member, rows)


class FeatureStore:
    """Read/append rows of one family folder."""

    def __init__(self, folder: str | Path, names: list[str] | None = None, meta: dict | None = None):
        self.folder = Path(folder)
        self.names = names
        self.meta = meta or {}
        self._shards = _ShardFolder(self.folder, "values")

    def refresh(self) -> None:
        self._shards.refresh()

    def __contains__(self, key: str) -> bool:
        return self._shards.view().locate([key])[0] is not None

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k, place in zip(keys, self._shards.view().locate(keys)) if place is None]

    def get(self, keys: list[str]) -> np.ndarray:
        return self._shards.rows(keys) if keys else np.zeros((0, len(self.names or [])), np.float32)

    def append(self, keys: list[str], values: np.ndarray) -> None:
        if not keys:
            return
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but {values.shape[0]} rows")
        self._write_meta()
        self._shards.append({"keys": np.asarray(keys, dtype=str), "values": values})

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

    def load(self) -> Mapping[str, str]:
        """The reasons known now, looked up on demand (``in``, ``get``, ``[]``; iterating reads them all)."""
        shards = _ShardFolder(self.folder, "reasons")
        shards.view()
        return FailureReasons(shards)

    def append(self, failed: list[tuple[str, str]]) -> None:
        if failed:
            keys, reasons = zip(*failed)
            _write_atomic(self.folder, {"keys": np.asarray(keys, dtype=str), "reasons": np.asarray(reasons, dtype=str)})


class FailureReasons(Mapping):
    """Failed key -> reason, as of ``FailureStore.load``."""

    def __init__(self, shards: _ShardFolder):
        self._shards = shards

    def __getitem__(self, key: str) -> str:
        return str(self._shards.rows([key])[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._shards.view().locate([key])[0] is not None

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[str]:
        view = self._shards.view()
        indexed = [k.decode("utf-8", "surrogatepass") for k in view.index.keys.tolist()] if view.index else []
        keys = list(dict.fromkeys([*indexed, *view.extra]))
        return iter([k for k, place in zip(keys, view.locate(keys)) if place is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)
