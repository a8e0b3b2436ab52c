"""A folder of awkward and broken inputs for the loader, built with PIL/numpy only.

``make_bad_corpus(root)`` writes the files and returns ``{relative posix path: "ok" | "error"}``: what
``decode_image`` must do with each. The constants below are the pixel data the "ok" files were made from, so tests
can check decoded values against them. Import from tests as ``from bad_corpus import make_bad_corpus``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

GREY16_VALUES = np.array([[0, 1, 128, 129, 257, 1000, 30000, 65534, 65535]], dtype=np.uint16)
TINY_RGB = (12, 34, 56)
LA_PIXELS = [(100, 255), (100, 0), (100, 128), (0, 64)]  # (grey, alpha)
PALETTE = [(255, 0, 0), (0, 0, 255)]  # index 0 is transparent
CMYK_COLOUR = (255, 0, 0, 0)  # pure cyan ink
CMYK_AS_RGB = (0, 255, 255)
FRAME_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
EXIF_SIZE = (48, 24)  # stored (width, height); displayed rotated 90 degrees clockwise
EXIF_MARK = 16  # side of the red square in the stored top-left corner
UNICODE_PATH = "dir with space/ünïcødé 画像 file.png"
UNICODE_SIZE = (33, 21)
BOMB_SIZE = (30000, 30000)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes_with_header(width: int, height: int, pixel_rows: bytes = b"\x00\x00") -> bytes:
    """A PNG (8-bit greyscale) whose IHDR claims ``width`` x ``height``, with valid CRCs, and a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(pixel_rows))
        + png_chunk(b"IEND", b"")
    )


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise_rgb(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _exif_rotated_jpeg() -> bytes:
    w, h = EXIF_SIZE
    arr = np.zeros((h, w, 3), np.uint8)
    arr[...] = (0, 0, 255)
    arr[:EXIF_MARK, :EXIF_MARK] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())


def _frames(mode: str) -> list[Image.Image]:
    return [Image.new("RGB", (12, 10), c).convert(mode) for c in FRAME_COLOURS]


def _animated(fmt: str, **kwargs) -> bytes:
    first, *rest = _frames("P" if fmt == "GIF" else "RGB")
    return _encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0, **kwargs)


def _palette_png() -> bytes:
    im = Image.new("P", (8, 4))
    im.putpalette([v for c in PALETTE for v in c])
    arr = np.zeros((4, 8), np.uint8)
    arr[:, 4:] = 1
    im.putdata(arr.ravel().tolist())
    return _encode(im, "PNG", transparency=0)


def _la_png() -> bytes:
    grey = np.array([[g for g, _ in LA_PIXELS]], np.uint8)
    alpha = np.array([[a for _, a in LA_PIXELS]], np.uint8)
    return _encode(Image.fromarray(np.stack([grey, alpha], axis=-1)), "PNG")


def _break_ihdr_crc(png: bytes) -> bytes:
    crc_at = 8 + 8 + 13  # signature, IHDR length+type, IHDR payload
    return png[:crc_at] + bytes(b ^ 0xFF for b in png[crc_at : crc_at + 4]) + png[crc_at + 4 :]


def permissions_are_bypassed(directory: Path) -> bool:
    """True when this process reads mode-000 files anyway (root with CAP_DAC_OVERRIDE)."""
    probe = Path(directory) / ".mode000_probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return True
    except PermissionError:
        return False
    finally:
        probe.chmod(0o600)
        probe.unlink()


def make_bad_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root``; return {relative path: expected outcome ("ok" or "error")}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    noise_jpeg = _encode(_noise_rgb(64, 48, 0), "JPEG", quality=90)
    noise_png = _encode(_noise_rgb(64, 48, 1), "PNG")
    files: dict[str, tuple[bytes, str]] = {
        "truncated.jpg": (noise_jpeg[: len(noise_jpeg) // 2], "error"),
        "truncated.png": (noise_png[: len(noise_png) // 2], "error"),
        "truncated_header.jpg": (noise_jpeg[:100], "error"),  # ends inside the marker segments
        "empty.jpg": (b"", "error"),
        "text.jpg": (b"this is a plain text file, not a photo\n", "error"),
        "page.png": (b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "error"),
        "bomb_header.png": (png_bytes_with_header(*BOMB_SIZE), "error"),
        "bad_crc.png": (_break_ihdr_crc(noise_png), "error"),
        "tiny_1x1.png": (_encode(Image.new("RGB", (1, 1), TINY_RGB), "PNG"), "ok"),
        "small_7x3.jpg": (_encode(_noise_rgb(7, 3, 2), "JPEG"), "ok"),
        "cmyk.jpg": (_encode(Image.new("CMYK", (16, 16), CMYK_COLOUR), "JPEG", quality=95), "ok"),
        "grey16.png": (_encode(Image.fromarray(GREY16_VALUES), "PNG"), "ok"),
        "palette_transparent.png": (_palette_png(), "ok"),
        "la.png": (_la_png(), "ok"),
        "animated.gif": (_animated("GIF"), "ok"),
        "animated.webp": (_animated("WEBP", lossless=True), "ok"),
        "exif_rot6.jpg": (_exif_rotated_jpeg(), "ok"),
        "png_named.jpg": (noise_png, "ok"),
        "trailing_garbage.png": (noise_png + b"\x00garbage after IEND" * 10, "ok"),
        UNICODE_PATH: (_encode(_noise_rgb(*UNICODE_SIZE, 3), "PNG"), "ok"),
        "x.jpg/inner.png": (_encode(_noise_rgb(5, 5, 4), "PNG"), "ok"),
        # As root, mode 000 does not stop reading, so the file then decodes fine.
        "unreadable.png": (noise_png, "ok" if permissions_are_bypassed(root) else "error"),
    }
    for name, (data, _) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "unreadable.png").chmod(0)
    expected = {name: outcome for name, (_, outcome) in files.items()}

    (root / "selfloop.jpg").symlink_to("selfloop.jpg")
    (root / "dangling.jpg").symlink_to("does_not_exist.jpg")
    (root / "loop").mkdir()
    (root / "loop" / "back").symlink_to("..", target_is_directory=True)
    os.mkfifo(root / "fifo.jpg")  # unreadable in a way root cannot bypass: a read would block forever
    expected.update({"selfloop.jpg": "error", "dangling.jpg": "error", "loop/back": "error", "x.jpg": "error",
                     "fifo.jpg": "error"})
    return expected
