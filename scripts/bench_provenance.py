"""Time ``read_provenance`` per image (and, for scale, ``decode_image`` on the same files).

    python scripts/bench_provenance.py [--data negate/sample_data] [--repeat 5] [--no-decode] [--no-built]
                                       [--json OUT.json]

Every image under ``--data`` (as ``negate provenance`` finds them) is read once to warm the page cache and the
imports (the C2PA library loads on the first manifest), then ``--repeat`` timed passes follow. Reported: ms/image
(mean, median, p95, max over all timed reads), what evidence was found, and the same statistics for ``decode_image``
(the first step of every ``negate infer`` row, so ``provenance / decode`` bounds the relative cost of provenance in
infer from above: infer also extracts features and scores). The shipped sample set carries almost no metadata (its
files were stripped), so a second set is timed too (``--no-built`` skips it): files built by
``tests/provenance_corpus.py`` that carry each kind of evidence, including C2PA manifests signed with a test
certificate, which is the expensive path (the manifest is validated, hashes included).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from negate.data.decode import DecodeError, decode_image  # noqa: E402
from negate.data.scan import scan_images  # noqa: E402
from negate.provenance import read_provenance  # noqa: E402
from negate.provenance_cmd import EXTENSIONS  # noqa: E402


def stats_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max()), "n": int(ms.size)}


def time_each(files: list[Path], fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for f in files:
            t0 = time.perf_counter()
            fn(f)
            times.append(time.perf_counter() - t0)
    return times


def built_files(folder: Path) -> list[Path]:
    """Files that carry each kind of evidence (tests/provenance_corpus.py), written to ``folder``."""
    sys.path.insert(0, str(REPO / "tests"))
    import provenance_corpus as pc

    size = (512, 384)
    blobs = {
        "xmp.jpg": pc.encode(pc.pixels(1, size), "JPEG", quality=90, xmp=pc.xmp_packet("trainedAlgorithmicMedia")),
        "iim.jpg": pc.jpeg_with_iim("trainedAlgorithmicMedia"),
        "exif.jpg": pc.encode(pc.pixels(2, size), "JPEG", quality=90,
                              exif=pc.exif_bytes("ComfyUI", "Steps: 20, Seed: 1")),
        "workflow.png": pc.png_insert_after_idat(  # a 100 kB zTXt workflow after the image data
            pc.encode(pc.pixels(3, size), "PNG"),
            pc.png_chunk(b"zTXt", b"workflow\x00\x00" + zlib.compress(pc.COMFY_WORKFLOW.encode() * 200))),
        "parameters.png": pc.png_with_text("parameters", pc.A1111_PARAMETERS),
        "xmp.webp": pc.webp_with_xmp(pc.xmp_packet("compositeWithTrainedAlgorithmicMedia")),
    }
    try:
        chain, key, _ = pc.make_test_chain()
        blobs["c2pa.jpg"] = pc.sign_c2pa(pc.encode(pc.pixels(4, size), "JPEG", quality=90), "image/jpeg", chain, key)
        blobs["c2pa.png"] = pc.sign_c2pa(pc.encode(pc.pixels(5, size), "PNG"), "image/png", chain, key)
    except Exception as e:  # no c2pa-python / cryptography
        print(f"warning: no C2PA files in the built set ({type(e).__name__}: {e})", file=sys.stderr)
    paths = []
    for name, data in blobs.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def _decode(path: Path) -> None:
    try:
        decode_image(path)
    except DecodeError:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO / "negate" / "sample_data"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-decode", action="store_true", help="skip the decode_image comparison")
    p.add_argument("--no-built", action="store_true", help="skip the set of built files carrying metadata")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args()

    files = scan_images(args.data, EXTENSIONS).files
    if not files:
        sys.exit(f"no images under {args.data}")
    found, errors = Counter(), 0
    for f in files:  # warm-up pass, and what there is to find
        prov = read_provenance(f)
        errors += bool(prov.error)
        found.update(e.kind + (" (declares AI)" if e.declares_ai else "") for e in prov.evidence)
    result = {"data": args.data, "images": len(files), "repeat": args.repeat,
              "bytes_mean": float(np.mean([f.stat().st_size for f in files])),
              "provenance_ms": stats_ms(time_each(files, read_provenance, args.repeat)),
              "evidence": dict(found), "files_with_error_note": errors}
    if not args.no_decode:
        for f in files:
            _decode(f)
        result["decode_ms"] = stats_ms(time_each(files, _decode, args.repeat))
        result["provenance_over_decode"] = result["provenance_ms"]["mean"] / result["decode_ms"]["mean"]

    print(f"{len(files)} images under {args.data} (mean {result['bytes_mean'] / 1e6:.2f} MB), "
          f"{args.repeat} timed passes after one warm-up pass")
    print("| step | mean ms/image | median | p95 | max |\n| --- | --- | --- | --- | --- |")
    for name in ("provenance", "decode"):
        s = result.get(f"{name}_ms")
        if s:
            print(f"| {name} | {s['mean']:.3f} | {s['median']:.3f} | {s['p95']:.3f} | {s['max']:.3f} |")
    if "provenance_over_decode" in result:
        print(f"provenance / decode: {100 * result['provenance_over_decode']:.1f}% of the decode time")
    print(f"evidence found: {dict(found) or 'none'}; files with an error note: {errors}")
    if not args.no_built:
        with tempfile.TemporaryDirectory() as tmp:
            built = built_files(Path(tmp))
            for f in built:
                read_provenance(f)
            result["built"] = {}
            print(f"\nbuilt files carrying evidence ({args.repeat} timed passes after a warm-up):")
            print("| file | bytes | mean ms | p95 ms | evidence |\n| --- | --- | --- | --- | --- |")
            for f in built:
                s = stats_ms(time_each([f], read_provenance, max(args.repeat, 20)))
                summary = read_provenance(f).summary
                result["built"][f.name] = {**s, "bytes": f.stat().st_size, "evidence": summary}
                print(f"| {f.name} | {f.stat().st_size} | {s['mean']:.3f} | {s['p95']:.3f} | {summary[:70]} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
