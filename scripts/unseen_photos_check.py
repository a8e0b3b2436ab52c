"""How often a model flags real photos it never saw, as they are and as they get shared (the costly error).

The dev set holds no photo larger than 700 KiB (size-budget crops), so its numbers say nothing of full-size camera
photos. This check scores a folder of real photos through ``negate infer`` in five views and prints, per view, the
share called synthetic / uncertain and the highest probability:

    original   the files as they are
    crop512    a native-pixel 512x512 centre crop (what the dev set's size-budget crops look like), JPEG q95
    half       0.5x Lanczos downscale, JPEG q95
    quarter    0.25x Lanczos downscale, JPEG q95
    jpeg75     re-saved as JPEG q75

``--fetch-debian DIR`` first fills DIR with the photos that carry a camera's EXIF Make tag from two Debian
wallpaper packages (plasma-workspace-wallpapers, mate-backgrounds: 1.7-4 MP JPEGs from Canon, Olympus, Sony, Nokia
and Konica Minolta cameras; only the package registry is needed). They are edited wallpapers rather than camera
originals, never part of any training set here.

    python scripts/unseen_photos_check.py --fetch-debian /tmp/debian_photos            # the shipped model
    python scripts/unseen_photos_check.py /tmp/debian_photos -m /path/to/model_folder
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds")
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def fetch_debian_photos(dest: Path) -> list[Path]:
    """The largest file of every wallpaper (the packages ship each in several sizes) whose EXIF names a camera."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "-q", *DEBIAN_PACKAGES], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        best: dict[str, tuple[int, Path]] = {}
        for path in (Path(tmp) / "x").rglob("*.jpg"):
            with Image.open(path) as im:
                make = str(im.getexif().get(271) or "").strip()
                pixels = im.width * im.height
            if not make:
                continue
            # plasma: wallpapers/<Name>/contents/images/<WxH>.jpg; mate: backgrounds/mate/<theme>/<Name>[_WxH].jpg
            name = re.sub(r"_\d+x\d+$", "", path.stem) if "backgrounds" in path.parts else \
                path.parts[path.parts.index("wallpapers") + 1]
            if name not in best or pixels > best[name][0]:
                best[name] = (pixels, path)
        out = []
        for name, (_, path) in sorted(best.items()):
            target = dest / f"{name}.jpg"
            shutil.copyfile(path, target)
            out.append(target)
    print(f"{len(out)} camera photos from {', '.join(DEBIAN_PACKAGES)} in {dest}", file=sys.stderr)
    return out


def make_views(photos: list[Path], root: Path) -> dict[str, Path]:
    views = {name: root / name for name in ("original", "crop512", "half", "quarter", "jpeg75")}
    for folder in views.values():
        folder.mkdir(parents=True)
    for path in photos:
        stem = path.stem
        shutil.copyfile(path, views["original"] / path.name)
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(512, w, h)
            left, top = (w - side) // 2 // 16 * 16, (h - side) // 2 // 16 * 16
            im.crop((left, top, left + side, top + side)).save(views["crop512"] / f"{stem}.jpg", quality=95)
            for name, factor in (("half", 2), ("quarter", 4)):
                small = im.resize((max(1, w // factor), max(1, h // factor)), Image.LANCZOS)
                small.save(views[name] / f"{stem}.jpg", quality=95)
            im.save(views["jpeg75"] / f"{stem}.jpg", quality=75)
    return views


def score(folder: Path, model: str) -> list[dict]:
    cmd = [sys.executable, "-m", "negate.cli", "infer", str(folder), "output=csv", "quiet=true", "-m", model]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"negate infer failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return list(csv.DictReader(io.StringIO(done.stdout)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="a folder of real photos")
    parser.add_argument("--fetch-debian", type=Path, help="fill this folder from the Debian wallpaper packages first")
    parser.add_argument("-m", "--model", default="shipped", help="model folder, registered name, latest or shipped")
    args = parser.parse_args()
    folder = args.fetch_debian or args.folder
    if folder is None:
        parser.error("give a folder of photos or --fetch-debian DIR")
    photos = fetch_debian_photos(folder) if args.fetch_debian else \
        sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not photos:
        raise SystemExit(f"no images in {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        views = make_views(photos, Path(tmp))
        print(f"{len(photos)} real photos, model {args.model}")
        print(f"{'view':<10} {'synthetic':>9} {'uncertain':>9} {'max p':>6}  highest")
        for name, path in views.items():
            rows = [r for r in score(path, args.model) if r.get("prob_synthetic")]
            probs = [float(r["prob_synthetic"]) for r in rows]
            top = max(rows, key=lambda r: float(r["prob_synthetic"]))
            share = lambda v: sum(r["verdict"] == v for r in rows) / len(rows)  # noqa: E731
            print(f"{name:<10} {share('synthetic'):>9.1%} {share('uncertain'):>9.1%} {max(probs):>6.3f}  "
                  f"{Path(top['path']).name}")


if __name__ == "__main__":
    main()
