"""Time-bounded mutation fuzzer for the provenance reader: ``read_provenance_bytes`` must return a well-formed
``Provenance`` for any input, never raise, and finish within its time limit.

    python scripts/fuzz_provenance.py --seconds 300 [--out outputs/fuzz_provenance] [--seed 0] [--seed-dir DIR]

Seeds: the metadata-free images of ``scripts/fuzz_loader.py`` plus files built by ``tests/provenance_corpus.py`` that
carry every kind of evidence: XMP digital source types (JPEG APP1, PNG iTXt, WebP, TIFF), IPTC-IIM in a Photoshop
block, PNG tEXt/zTXt/iTXt chunks (AUTOMATIC1111 parameters, ComfyUI prompt and workflow), EXIF Software and
UserComment, and C2PA manifests signed with a test certificate (JPEG, PNG, WebP; when c2pa-python and cryptography are
installed). Mutators are the loader fuzzer's (bit flips, integer overwrites, inserts, deletes, truncation, splicing,
PNG CRC and RIFF size repair) plus one that aims at metadata: bytes inside a JUMBF box, an XMP packet, an EXIF block or
a text chunk.

A *crash* is an exception out of the reader, or a result that breaks its contract: not a ``Provenance``; an evidence
kind outside c2pa/iptc/png/exif; an empty or multi-line text, or one over ``MAX_EVIDENCE_CHARS``; ``verified`` on
anything but C2PA; a multi-line ``error``. Its input goes to ``OUT/crashes/<sha>.bin`` with the traceback in ``.txt``.
Inputs slower than ``--slow-seconds`` go to ``OUT/slow/``, and inputs
whose note came from the reader's catch-all (an exception it has no specific message for) to ``OUT/unexpected/``.
The loop runs in a child process that writes each input to ``OUT/current.bin`` first, so a segfault or abort in the
native C2PA library, or a hang (``--hang-seconds``), is caught by the parent, saved to ``OUT/crashes/`` and the loop
restarts. C2PA reads abandoned at the time limit (the native call cannot be stopped) are counted as
``c2pa_abandoned``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))

import fuzz_loader  # noqa: E402  (seeds, mutators, PNG/RIFF repair and bookkeeping shared with the loader fuzzer)

from negate.provenance import MAX_EVIDENCE_CHARS, Evidence, Provenance, read_provenance_bytes  # noqa: E402

KINDS = {"c2pa", "iptc", "png", "exif"}
METADATA_MARKS = [b"jumb", b"jumd", b"c2pa", b"cbor", b"Exif\x00\x00", b"<x:xmpmeta", b"DigitalSourceType", b"tEXt",
                  b"zTXt", b"iTXt", b"eXIf", b"caBX", b"8BIM", b"C2PA", b"XMP ", b"EXIF", b"\x1c\x02"]


class FuzzFailure(AssertionError):
    """The reader returned, but its result breaks the contract."""


# ----------------------------------------------------------------------------------------------------- target

def check_provenance(data: bytes, timeout_s: float) -> tuple[str, str | None]:
    """("evidence" | "nothing" | "noted" | "unexpected", the first note with numbers blanked, or None).

    Raises on any contract violation. "unexpected" is a note from the reader's catch-all (an exception it has no
    specific message for): not a crash, but worth a look.
    """
    prov = read_provenance_bytes(data, "fuzz", timeout_s=timeout_s)
    if not isinstance(prov, Provenance) or not isinstance(prov.evidence, tuple):
        raise FuzzFailure(f"returned {type(prov).__name__}, not a Provenance with a tuple of evidence")
    for ev in prov.evidence:
        if not isinstance(ev, Evidence) or ev.kind not in KINDS:
            raise FuzzFailure(f"bad evidence {ev!r}")
        if not ev.text or "\n" in ev.text or len(ev.text) > MAX_EVIDENCE_CHARS or not ev.text.isprintable():
            raise FuzzFailure(f"evidence text is not one short printable line: {ev.text!r}")
        if ev.verified and ev.kind != "c2pa":
            raise FuzzFailure(f"verified evidence that is not C2PA: {ev!r}")
    if not isinstance(prov.error, str) or "\n" in prov.error:
        raise FuzzFailure(f"error note is not one line: {prov.error!r}")
    row = prov.as_row()
    if set(row) != {"path", "provenance", "declared_ai", "verified_ai", "provenance_error"}:
        raise FuzzFailure(f"row keys {sorted(row)}")
    if prov.error:
        first = prov.error.split("; ")[0]
        if first.startswith("metadata reader failed"):  # the reader's catch-all: worth a clearer note
            return "unexpected", first[:120]
        kind = re.sub(r"\s*\(.*$", "", first)  # drop details in parentheses, chunk names, quoted names and numbers
        kind = re.sub(r"\ba .{1,4} chunk\b", "a _ chunk", kind)
        return "noted", re.sub(r"\b\d+\b", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "_", kind))[:80]
    return ("evidence" if prov.evidence else "nothing"), None


# ------------------------------------------------------------------------------------------------------ seeds

def provenance_seeds() -> list[tuple[str, bytes]]:
    import provenance_corpus as pc

    seeds = []
    for form in ["attribute", "element", "resource"]:
        xmp = pc.xmp_packet("trainedAlgorithmicMedia", form)
        seeds += [(f"xmp_{form}_{b.__name__}", b(xmp)) for b in
                  (pc.jpeg_with_xmp, pc.png_with_xmp, pc.webp_with_xmp, pc.tiff_with_xmp)]
    seeds.append(("iim", pc.jpeg_with_iim("compositeWithTrainedAlgorithmicMedia")))
    for chunk in ["tEXt", "zTXt", "iTXt", "iTXt-z"]:
        for key, value in [("parameters", pc.A1111_PARAMETERS), ("prompt", pc.COMFY_PROMPT),
                           ("workflow", pc.COMFY_WORKFLOW), ("Software", "NovelAI")]:
            seeds.append((f"png_{chunk}_{key}", pc.png_with_text(key, value, chunk)))
    seeds += [("exif_jpeg", pc.jpeg_with_exif("ComfyUI", user_comment=pc.A1111_PARAMETERS)),
              ("exif_png", pc.png_with_exif("Midjourney")), ("exif_webp", pc.webp_with_exif("DALL-E 3")),
              ("exif_tiff", pc.tiff_with_software("Stable Diffusion"))]
    try:
        chain, key, _ = pc.make_test_chain()
        for fmt, mime in [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]:
            asset = pc.encode(pc.pixels(3, (24, 16)), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
            seeds.append((f"c2pa_{fmt.lower()}", pc.sign_c2pa(asset, mime, chain, key)))
        parent = next(d for n, d in seeds if n == "c2pa_jpeg")
        seeds.append(("c2pa_ingredient", pc.sign_c2pa_edit_of(parent, pc.encode(pc.pixels(4, (24, 16)), "JPEG"),
                                                              chain, key)))
    except Exception as e:  # no c2pa-python or cryptography: fuzz the rest
        print(f"warning: no C2PA seeds ({type(e).__name__}: {e})", file=sys.stderr)
    return seeds


# --------------------------------------------------------------------------------------------------- mutators

def m_metadata(rng: random.Random, d: bytes, _) -> bytes:
    """Overwrite a few bytes shortly after a metadata marker (JUMBF, XMP, EXIF, text chunk, IIM)."""
    spots = [i for mark in METADATA_MARKS for i in _find_all(d, mark, 8)]
    if not spots:
        return fuzz_loader.m_set_bytes(rng, d, _)
    b = bytearray(d)
    base = rng.choice(spots)
    for _ in range(rng.randint(1, 6)):
        p = min(len(b) - 1, base + rng.randrange(0, 600))
        b[p] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(b)


def _find_all(d: bytes, mark: bytes, limit: int) -> list[int]:
    out, at = [], d.find(mark)
    while at >= 0 and len(out) < limit:
        out.append(at)
        at = d.find(mark, at + 1)
    return out


MUTATORS = fuzz_loader.MUTATORS + [m_metadata, m_metadata, m_metadata]


def next_input(rng: random.Random, seeds) -> tuple[str, bytes]:
    if rng.random() < 0.05:
        return "random", fuzz_loader.random_input(rng)
    name, data = rng.choice(seeds)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data = rng.choice(MUTATORS)(rng, data, seeds)
    if rng.random() < 0.8:
        data = fuzz_loader.fix_riff_size(fuzz_loader.fix_png_crcs(data))
    return name, data


# ----------------------------------------------------------------------------------------------------- worker

def _abandoned() -> int:
    return sum(t.name == "negate-c2pa-reader" and t.is_alive() for t in threading.enumerate())


def worker(args) -> None:
    if args.mem_mb:
        limit = args.mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    out = Path(args.out)
    seeds = fuzz_loader.make_seeds() + provenance_seeds()
    if args.seed_dir:
        seeds += fuzz_loader.load_seed_dir(Path(args.seed_dir))
    for name, data in seeds:  # the seeds themselves must satisfy the contract
        check_provenance(data, args.timeout)
    rng = random.Random(args.seed)
    stats = {"tries": 0, "evidence": 0, "nothing": 0, "noted": 0, "unexpected": 0, "notes": Counter(),
             "crashes": Counter(),
             "slow": 0, "max_seconds": 0.0, "c2pa_abandoned": 0, "seeds": len(seeds)}
    current = out / "current.bin"
    deadline = time.monotonic() + args.seconds
    last_dump = time.monotonic()
    stats_path = Path(args.stats)
    while time.monotonic() < deadline:
        origin, data = next_input(rng, seeds)
        current.write_bytes(data)
        t0 = time.perf_counter()
        try:
            outcome, note = check_provenance(data, args.timeout)
        except Exception as e:  # a crash: record it and go on fuzzing
            sig = fuzz_loader._signature(e)
            stats["crashes"][sig] += 1
            if stats["crashes"][sig] <= 3:
                fuzz_loader._save(out / "crashes", data, f"seed {origin}\n{sig}\n{traceback.format_exc()}")
            outcome, note = "crash", None
        elapsed = time.perf_counter() - t0
        stats["tries"] += 1
        stats["max_seconds"] = max(stats["max_seconds"], elapsed)
        if outcome in ("evidence", "nothing", "noted", "unexpected"):
            stats[outcome] += 1
        if note:
            stats["notes"][note] += 1
        if outcome == "unexpected" and stats["notes"][note] <= 3:
            fuzz_loader._save(out / "unexpected", data, f"seed {origin}\n{note}\n")
        if elapsed > args.slow_seconds:
            stats["slow"] += 1
            fuzz_loader._save(out / "slow", data, f"seed {origin}\n{elapsed:.2f} s\n")
        stats["c2pa_abandoned"] = max(stats["c2pa_abandoned"], _abandoned())
        if time.monotonic() - last_dump > 5:
            stats_path.write_text(json.dumps(stats))
            last_dump = time.monotonic()
    stats_path.write_text(json.dumps(stats))


# ----------------------------------------------------------------------------------------------------- parent

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
               "--seed", str(args.seed + run), "--stats", str(stats_path), "--timeout", str(args.timeout),
               "--slow-seconds", str(args.slow_seconds), "--mem-mb", str(args.mem_mb)]
        if args.seed_dir:
            cmd += ["--seed-dir", args.seed_dir]
        if current.exists():
            current.unlink()
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
            saved = fuzz_loader._save(out / "crashes", data, f"worker died: {kind}\n")
            print(f"worker died ({kind}); input saved to {saved}", file=sys.stderr)
            total["tries"] = total.get("tries", 0) + 1
        if stats_path.exists():
            part = json.loads(stats_path.read_text())
            abandoned = part.pop("c2pa_abandoned", 0)
            fuzz_loader._merge(total, part)
            total["c2pa_abandoned"] = max(total.get("c2pa_abandoned", 0), abandoned)
            stats_path.unlink()
        run += 1
    if current.exists():
        current.unlink()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--out", default="outputs/fuzz_provenance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-dir", default=None, help="extra seed files (each <= 256 kB)")
    p.add_argument("--timeout", type=float, default=2.0, help="read_provenance_bytes timeout_s per input")
    p.add_argument("--slow-seconds", type=float, default=3.0)
    p.add_argument("--hang-seconds", type=float, default=60.0)
    p.add_argument("--mem-mb", type=int, default=4096, help="address-space limit of the fuzz process (0: none)")
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
    tries = total.get("tries", 0)
    print(f"{tries} inputs in {wall:.0f} s ({tries / max(wall, 1e-9):.0f}/s): {total.get('evidence', 0)} with "
          f"evidence, {total.get('nothing', 0)} without, {total.get('noted', 0)} with an error note, "
          f"{total.get('unexpected', 0)} unexpected notes, {crashes} crashes, "
          f"{total.get('slow', 0)} slow, {total.get('c2pa_abandoned', 0)} C2PA reads abandoned; outputs in {args.out}")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
