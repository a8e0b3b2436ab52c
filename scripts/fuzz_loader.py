"""Time-bounded mutation fuzzer for the image loader: ``decode_image`` must return an RGB image or raise DecodeError.

    python scripts/fuzz_loader.py --seconds 300 [--out outputs/fuzz_loader] [--seed 0] [--seed-dir DIR]

Inputs are random bytes and mutations (bit flips, integer overwrites, inserts, deletes, truncation, splicing, PNG CRC
and RIFF size repair so mutants get past checksums) of valid seeds generated here: JPEG (baseline, progressive, grey,
CMYK, EXIF-rotated, MPO), PNG (every mode, APNG), GIF, WebP (lossy, lossless, animated), TIFF (compressions,
16-bit, float, int32, CMYK, 1-bit G4, multi-page) and BMP; ``--seed-dir`` adds your own files.

A *crash* is anything but a DecodeError with a one-line message or a valid RGB image (mode "RGB", uint8, size within
max_pixels): its input goes to ``OUT/crashes/<sha>.bin`` with the traceback in ``.txt``. Inputs slower than
``--slow-seconds`` go to ``OUT/slow/``. The fuzz loop runs in a child process (one core) that writes each input to
``OUT/current.bin`` first, so a segfault, an abort or a hang (``--hang-seconds``) in a C decoder is caught by the parent,
saved to ``OUT/crashes/``, and the loop restarts. DecodeErrors that came from the loader's catch-all (an exception
type the loader does not expect from PIL) are saved to ``OUT/unexpected/`` for review: not crashes, but worth a
clearer message. Targets are listed in ``TARGETS``; new entry points (the whole infer path) plug in there.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
import traceback
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from negate.data.decode import DecodeError, decode_image

MAGICS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
          b"II*\x00", b"MM\x00*", b"BM", b"\xff\xd8\xff\xe1"]
INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF]


class FuzzFailure(AssertionError):
    """The target broke its contract without raising anything unexpected (e.g. returned a non-RGB image)."""


# ----------------------------------------------------------------------------------------------------- targets

def check_decode(data: bytes, max_pixels: int) -> tuple[str, str | None]:
    """("ok", None), ("error", cause type) or ("unexpected", cause type); raises on any contract violation.

    "unexpected" is a DecodeError from the loader's catch-all: an exception type it has no specific message for.
    """
    try:
        img = decode_image(data, max_pixels=max_pixels)
    except DecodeError as e:
        if not e.reason or "\n" in str(e):
            raise FuzzFailure(f"DecodeError message is not one line: {str(e)!r}") from e
        cause = type(e.__cause__).__name__ if e.__cause__ is not None else "(own check)"
        return ("unexpected" if "decoder failed (" in e.reason else "error"), cause
    if not isinstance(img, Image.Image) or img.mode != "RGB":
        raise FuzzFailure(f"returned {type(img).__name__} mode {getattr(img, 'mode', None)!r}, not an RGB image")
    w, h = img.size
    if w < 1 or h < 1 or w * h > max_pixels:
        raise FuzzFailure(f"returned size {w}x{h} outside [1, max_pixels={max_pixels}]")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.shape != (h, w, 3):
        raise FuzzFailure(f"pixels are {arr.dtype} {arr.shape}, not uint8 ({h}, {w}, 3)")
    return "ok", None


TARGETS = {"decode": check_decode}


# ------------------------------------------------------------------------------------------------------- seeds

def _enc(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    # a fresh copy: PIL leaves encoder settings on an image it saved (encoderconfig), which breaks the next save
    im.copy().save(buf, fmt, **{k: ([f.copy() for f in v] if k == "append_images" else v) for k, v in kw.items()})
    return buf.getvalue()


def make_seeds() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    h, w = 24, 32
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 8, yy * 10, (xx + yy) * 4], -1).astype(np.uint8) ^ rng.integers(0, 32, (h, w, 3), np.uint8)
    rgb = Image.fromarray(base)
    rgba = Image.fromarray(np.dstack([base, (xx * 8).astype(np.uint8)]))
    grey = rgb.convert("L")
    pal = rgb.quantize(16)
    bits = grey.convert("1")
    g16 = Image.fromarray((xx * 2000 + yy * 17).astype(np.uint16))
    f32 = Image.fromarray((xx / w).astype(np.float32))
    i32 = Image.fromarray((xx * 100000 - 50000).astype(np.int32))
    cmyk = rgb.convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT), rgb.rotate(180)]
    seeds = [
        ("jpeg", _enc(rgb, "JPEG", quality=75)),
        ("jpeg_progressive", _enc(rgb, "JPEG", progressive=True, optimize=True)),
        ("jpeg_grey", _enc(grey, "JPEG")),
        ("jpeg_cmyk", _enc(cmyk, "JPEG")),
        ("jpeg_444_exif", _enc(rgb, "JPEG", subsampling=0, exif=exif.tobytes())),
        ("mpo", _enc(rgb, "MPO", save_all=True, append_images=frames[1:2])),
        ("png_rgb", _enc(rgb, "PNG")),
        ("png_rgba", _enc(rgba, "PNG")),
        ("png_la", _enc(rgba.convert("LA"), "PNG")),
        ("png_l", _enc(grey, "PNG")),
        ("png_p_trns", _enc(pal, "PNG", transparency=0)),
        ("png_1bit", _enc(bits, "PNG")),
        ("png_16", _enc(g16, "PNG")),
        ("png_exif", _enc(rgb, "PNG", exif=exif.tobytes())),
        ("apng", _enc(rgb, "PNG", save_all=True, append_images=frames[1:], duration=50)),
        ("gif", _enc(pal, "GIF")),
        ("gif_anim", _enc(frames[0].quantize(8), "GIF", save_all=True,
                          append_images=[f.quantize(8) for f in frames[1:]], transparency=0, disposal=2, loop=0)),
        ("webp_lossy", _enc(rgb, "WEBP", quality=60)),
        ("webp_lossless_rgba", _enc(rgba, "WEBP", lossless=True)),
        ("webp_anim", _enc(rgb, "WEBP", save_all=True, append_images=frames[1:], duration=50)),
        ("tiff_raw", _enc(rgb, "TIFF")),
        ("tiff_lzw", _enc(rgb, "TIFF", compression="tiff_lzw")),
        ("tiff_deflate_rgba", _enc(rgba, "TIFF", compression="tiff_adobe_deflate")),
        ("tiff_jpeg", _enc(rgb, "TIFF", compression="jpeg")),
        ("tiff_packbits_p", _enc(pal, "TIFF", compression="packbits")),
        ("tiff_16", _enc(g16, "TIFF")),
        ("tiff_float", _enc(f32, "TIFF")),
        ("tiff_int32", _enc(i32, "TIFF")),
        ("tiff_cmyk", _enc(cmyk, "TIFF")),
        ("tiff_g4", _enc(bits, "TIFF", compression="group4")),
        ("tiff_multipage", _enc(rgb, "TIFF", save_all=True, append_images=frames[1:])),
        ("tiff_oriented", _enc(rgb, "TIFF", tiffinfo={0x0112: 6})),
        ("bmp_rgb", _enc(rgb, "BMP")),
        ("bmp_p", _enc(pal, "BMP")),
        ("bmp_1bit", _enc(bits, "BMP")),
        ("bmp_rgba", _enc(rgba, "BMP")),
    ]
    return seeds


def load_seed_dir(folder: Path, max_bytes: int = 256_000) -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size <= max_bytes:
            out.append((f"file:{path.name}", path.read_bytes()))
    return out


# --------------------------------------------------------------------------------------------------- mutators

def _pos(rng: random.Random, n: int) -> int:
    if n == 0:
        return 0
    return rng.randrange(min(n, 256)) if rng.random() < 0.5 else rng.randrange(n)  # headers matter most


def m_flip_bits(rng, d, _):
    b = bytearray(d)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[_pos(rng, len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_set_bytes(rng, d, _):
    b = bytearray(d)
    for _ in range(rng.randint(1, 4)):
        if b:
            b[_pos(rng, len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(b)


def m_int(rng, d, _):
    if len(d) < 4:
        return d
    width = rng.choice([2, 4])
    p = min(_pos(rng, len(d)), len(d) - width)
    fmt = rng.choice(["<", ">"]) + ("H" if width == 2 else "I")
    current = struct.unpack_from(fmt, d, p)[0]
    value = rng.choice(INTERESTING + [current + 1, current - 1, current * 2, current // 2, rng.randrange(1 << 16)])
    value &= (1 << (8 * width)) - 1
    return d[:p] + struct.pack(fmt, value) + d[p + width:]


def m_insert(rng, d, _):
    p = _pos(rng, len(d) + 1)
    if d and rng.random() < 0.5:
        a = rng.randrange(len(d))
        chunk = d[a : a + rng.randint(1, 256)]
    else:
        chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return d[:p] + chunk + d[p:]


def m_delete(rng, d, _):
    if not d:
        return d
    p = _pos(rng, len(d))
    return d[:p] + d[p + rng.randint(1, 256):]


def m_truncate(rng, d, _):
    return d[: rng.randrange(len(d) + 1)] if d else d


def m_splice(rng, d, seeds):
    other = rng.choice(seeds)[1]
    return d[: rng.randrange(len(d) + 1)] + other[rng.randrange(len(other) + 1):]


MUTATORS = [m_flip_bits, m_set_bytes, m_int, m_int, m_insert, m_delete, m_truncate, m_splice]


def fix_png_crcs(d: bytes) -> bytes:
    if not d.startswith(b"\x89PNG\r\n\x1a\n"):
        return d
    b, p = bytearray(d), 8
    while p + 12 <= len(b):
        length = struct.unpack_from(">I", b, p)[0]
        end = p + 8 + length
        if end + 4 > len(b):
            break
        struct.pack_into(">I", b, end, zlib.crc32(bytes(b[p + 4 : end])))
        p = end + 4
    return bytes(b)


def fix_riff_size(d: bytes) -> bytes:
    if d[:4] == b"RIFF" and len(d) >= 8:
        return d[:4] + struct.pack("<I", len(d) - 8) + d[8:]
    return d


def random_input(rng: random.Random) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 8, 16, 64, 512, 2048])))
    return (rng.choice(MAGICS) + data) if rng.random() < 0.6 else data


def next_input(rng: random.Random, seeds) -> tuple[str, bytes]:
    if rng.random() < 0.1:
        return "random", random_input(rng)
    name, data = rng.choice(seeds)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 4])):
        data = rng.choice(MUTATORS)(rng, data, seeds)
    if rng.random() < 0.7:
        data = fix_riff_size(fix_png_crcs(data))
    return name, data


# ------------------------------------------------------------------------------------------------------- worker

def _save(folder: Path, data: bytes, note: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:16] + ".bin")
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(note)
    return path


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
    return f"{type(exc).__name__}@{where}"


def worker(args) -> None:
    if args.mem_mb:
        limit = args.mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")  # PIL warns on every corrupt tag; outcomes are what we judge
    out = Path(args.out)
    target = TARGETS[args.target]
    seeds = make_seeds() + (load_seed_dir(Path(args.seed_dir)) if args.seed_dir else [])
    for name, data in seeds:  # the seeds themselves must pass, or the fuzzer tests nothing
        if target(data, args.max_pixels)[0] != "ok":
            print(f"warning: seed {name} does not decode", file=sys.stderr)
    rng = random.Random(args.seed)
    stats = {"tries": 0, "ok": 0, "decode_error": 0, "causes": Counter(), "crashes": Counter(),
             "unexpected": Counter(), "slow": 0, "max_seconds": 0.0, "seeds": len(seeds)}
    current = out / "current.bin"
    deadline = time.monotonic() + args.seconds
    last_dump = time.monotonic()
    stats_path = Path(args.stats)
    while time.monotonic() < deadline:
        origin, data = next_input(rng, seeds)
        current.write_bytes(data)
        t0 = time.perf_counter()
        try:
            outcome, cause = target(data, args.max_pixels)
        except Exception as e:  # a crash: record it and go on fuzzing
            sig = _signature(e)
            stats["crashes"][sig] += 1
            if stats["crashes"][sig] <= 3:
                _save(out / "crashes", data, f"seed {origin}\n{sig}\n{traceback.format_exc()}")
            outcome, cause = "crash", None
        elapsed = time.perf_counter() - t0
        stats["tries"] += 1
        stats["max_seconds"] = max(stats["max_seconds"], elapsed)
        if outcome == "ok":
            stats["ok"] += 1
        elif outcome in ("error", "unexpected"):
            stats["decode_error"] += 1
            stats["causes"][cause] += 1
            if outcome == "unexpected":
                stats["unexpected"][cause] += 1
                if stats["unexpected"][cause] <= 3:
                    try:
                        decode_image(data, max_pixels=args.max_pixels)
                    except DecodeError as e:
                        _save(out / "unexpected", data, f"seed {origin}\n{e}\n" + "".join(
                            traceback.format_exception(e.__cause__)))
        if elapsed > args.slow_seconds:
            stats["slow"] += 1
            _save(out / "slow", data, f"seed {origin}\n{elapsed:.2f} s\n")
        if time.monotonic() - last_dump > 5:
            stats_path.write_text(json.dumps(stats))
            last_dump = time.monotonic()
    stats_path.write_text(json.dumps(stats))


# ------------------------------------------------------------------------------------------------------- parent

def _merge(total: dict, part: dict) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            total.setdefault(k, Counter()).update(v)
        elif k == "max_seconds":
            total[k] = max(total.get(k, 0.0), v)
        elif k == "seeds":
            total[k] = v
        else:
            total[k] = total.get(k, 0) + v


def supervise(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    current = out / "current.bin"
    deadline = time.monotonic() + args.seconds
    total: dict = {"process_crashes": Counter()}
    run = 0
    while (remaining := deadline - time.monotonic()) > 1:
        stats_path = out / f"stats_{run}.json"
        cmd = [sys.executable, __file__, "--worker", "--seconds", str(remaining), "--out", str(out),
               "--seed", str(args.seed + run), "--stats", str(stats_path), "--max-pixels", str(args.max_pixels),
               "--slow-seconds", str(args.slow_seconds), "--mem-mb", str(args.mem_mb), "--target", args.target]
        if args.seed_dir:
            cmd += ["--seed-dir", args.seed_dir]
        if current.exists():
            current.unlink()
        # C decoders (libtiff, libjpeg) print their complaints on stderr; keep them out of the report
        with open(out / "worker_stderr.log", "ab") as log:
            proc = subprocess.Popen(cmd, stderr=log)
        hung = False
        while proc.poll() is None:
            time.sleep(0.5)
            if current.exists() and time.time() - current.stat().st_mtime > args.hang_seconds:
                proc.kill()
                proc.wait()
                hung = True
        if proc.returncode != 0 and not hung and not current.exists():
            tail = (out / "worker_stderr.log").read_text(errors="replace")[-3000:]
            sys.exit(f"{tail}\nfuzz worker failed before its first input (exit code {proc.returncode})")
        if hung or proc.returncode != 0:
            data = current.read_bytes()
            kind = "hang" if hung else f"exit code {proc.returncode}"
            total["process_crashes"][kind] += 1
            saved = _save(out / "crashes", data, f"worker died: {kind}\n")
            print(f"worker died ({kind}); input saved to {saved}", file=sys.stderr)
            # the dead worker's last stats dump missed its final inputs; count at least the fatal one
            total["tries"] = total.get("tries", 0) + 1
        if stats_path.exists():
            _merge(total, json.loads(stats_path.read_text()))
            stats_path.unlink()
        run += 1
    if current.exists():
        current.unlink()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--out", default="outputs/fuzz_loader")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-dir", default=None, help="extra seed files (each <= 256 kB)")
    p.add_argument("--max-pixels", type=int, default=64_000_000)
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--hang-seconds", type=float, default=60.0)
    p.add_argument("--mem-mb", type=int, default=4096, help="address-space limit of the fuzz process (0: none)")
    p.add_argument("--target", choices=sorted(TARGETS), default="decode")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stats", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    for stale in ["crashes", "slow", "unexpected", "worker_stderr.log"]:  # a report covers this run only
        path = Path(args.out) / stale
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    t0 = time.monotonic()
    total = supervise(args)
    wall = time.monotonic() - t0
    crashes = sum(total.get("crashes", {}).values()) + sum(total["process_crashes"].values())
    print(json.dumps({k: (dict(v.most_common()) if isinstance(v, Counter) else v) for k, v in total.items()},
                     indent=1))
    print(f"{total.get('tries', 0)} inputs in {wall:.0f} s ({total.get('tries', 0) / max(wall, 1e-9):.0f}/s): "
          f"{total.get('ok', 0)} images, {total.get('decode_error', 0)} DecodeErrors, {crashes} crashes, "
          f"{total.get('slow', 0)} slow; outputs in {args.out}")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
