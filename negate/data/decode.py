"""Decode any image file into an 8-bit RGB ``PIL.Image`` or raise ``DecodeError`` with a one-line reason.

Every image that enters negate goes through :func:`decode_image`, so one bad file costs one ``DecodeError``, never a
crashed run. Only JPEG (incl. MPO), PNG, GIF, WebP, BMP and TIFF are decoded, recognised by content, not by name.

Conversion rules (the output is always mode ``"RGB"``, uint8, at least 1x1):

* Size limit: width*height from the file header is checked against ``max_pixels`` *before* any pixel is decoded
  (``data.max_pixels`` in the config). PIL's own decompression-bomb errors and warnings also become ``DecodeError``.
  PIL's global ``Image.MAX_IMAGE_PIXELS`` is neither read for the header check nor modified.
* Truncated or corrupt files raise; ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone.
* Animated GIF/WebP and multi-page TIFF/MPO: the first frame only.
* EXIF orientation is applied (``ImageOps.exif_transpose``). An unreadable EXIF block is ignored (the pixels are kept
  as stored) rather than losing an image whose pixels decoded fine.
* Transparency (RGBA, LA, PA, premultiplied RGBa/La, P/L/RGB with a tRNS colour key) is alpha-composited over an
  opaque white background, ``BACKGROUND = (255, 255, 255)``.
* Greyscale (L) and 1-bit images are replicated to three channels (1-bit becomes 0/255); palettes are expanded.
* 16-bit greyscale (``I;16*``) is scaled, not clipped: ``v8 = round(v16 * 255 / 65535)``. 16-bit RGB(A) PNG/TIFF are
  already reduced to 8 bits by PIL while reading (it keeps the high byte).
* 32-bit integer (``I``): when every value lies in [0, 65535] (how PIL reports most 16-bit sources) the 16-bit rule
  applies; otherwise the full int32 range maps linearly onto [0, 255].
* 32-bit float (``F``): non-finite values become 0; when the finite values lie in [0, 1] they are scaled by 255,
  otherwise min-max stretched onto [0, 255] (a constant image outside [0, 1] is clipped to [0, 1] first).
* CMYK, YCbCr, LAB, HSV, RGBX: PIL's ``convert("RGB")`` (CMYK without ICC colour management).
* Embedded ICC profiles are not applied: pixel values stay as stored, which is what forensic features need.

``warnings.catch_warnings`` is used to turn PIL's ``DecompressionBombWarning`` into an error; like every use of it,
that is process-wide while active, so call this from processes (DataLoader workers), not from many threads at once.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import (  # noqa: F401  (plugin imports register their formats with PIL)
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
DEFAULT_MAX_PIXELS = 64_000_000
BACKGROUND = (255, 255, 255)
# PIL format ids tried in this order; JPEG's factory also returns MPO files.
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DIRECT_MODES = {"1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
_MAX_REASON_CHARS = 300


class DecodeError(Exception):
    """An image that cannot be used, with a one-line human ``reason`` and, for files, the ``path``."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.reason = _one_line(reason)
        self.path = None if path is None else Path(path)
        super().__init__(self.reason if self.path is None else f"{_one_line(str(self.path))}: {self.reason}")

    def __reduce__(self):  # survive the trip from a DataLoader worker with reason and path intact
        return type(self), (self.reason, self.path)


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip() or "unknown error"
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def has_image_extension(path: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> bool:
    return Path(path).suffix.lower() in extensions


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stat_error_reason(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(err, FileNotFoundError):
        return "dangling symlink (target missing)" if os.path.islink(path) else "file not found"
    if isinstance(err, NotADirectoryError):
        return "file not found (a parent in the path is not a directory)"
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"cannot access file: {err.strerror or err}"


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of a regular file (symlinks followed), or ``DecodeError`` saying why it cannot be read."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise DecodeError(_stat_error_reason(path, e), path) from e
    except ValueError as e:  # e.g. an embedded NUL byte
        raise DecodeError(f"invalid path ({e})", path) from e
    if stat.S_ISDIR(st.st_mode):
        raise DecodeError("is a directory, not a file", path)
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or device would block or never end
        raise DecodeError("not a regular file (FIFO, socket or device)", path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError as e:
        raise DecodeError("is a directory, not a file", path) from e
    except OSError as e:
        raise DecodeError(_stat_error_reason(path, e), path) from e


def _mpx(pixels: int) -> str:
    v = pixels / 1e6
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if v >= 0.01 else f"{v:.6f}".rstrip("0").rstrip(".")


def _check_size(width: int, height: int, max_pixels: int, path: Path | None) -> None:
    if width <= 0 or height <= 0:
        raise DecodeError(f"image has an empty size {width}x{height}", path)
    if width * height > max_pixels:
        raise DecodeError(
            f"image is {width}x{height} = {_mpx(width * height)} Mpx, above the {_mpx(max_pixels)} Mpx limit "
            "(data.max_pixels)",
            path,
        )


_UNSUPPORTED_SIGNATURES = [
    ("HEIF/AVIF", lambda d: d[4:8] == b"ftyp" and d[8:12] in {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"}),
    ("JPEG XL", lambda d: d.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL "))),
    ("PDF", lambda d: d.startswith(b"%PDF")),
    ("Photoshop PSD", lambda d: d.startswith(b"8BPS")),
    ("ICO", lambda d: d.startswith(b"\x00\x00\x01\x00")),
]


def _text_kind(text: str) -> str:
    """What a text file that was passed as an image is: SVG (vector graphics, not supported), HTML, XML or text."""
    if re.search(r"<svg[\s>]", text, re.I) or re.match(r"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<!doctype\s+svg", text, re.I | re.S):
        return "an SVG (vector graphics; only raster images are supported)"
    if re.match(r"\s*<(!doctype\s+html|html|head|body)", text, re.I):
        return "HTML"
    if re.match(r"\s*<\?xml", text, re.I):
        return "XML"
    return "text"


def _describe_content(data: bytes) -> str:
    head = data[:256]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"file is {_text_kind(text)}, not an image (starts with {' '.join(text.split())[:40]!r})"
    for kind, matches in _UNSUPPORTED_SIGNATURES:
        if matches(data):
            return f"{kind} files are not supported (only JPEG/PNG/GIF/WebP/BMP/TIFF)"
    return f"not a JPEG/PNG/GIF/WebP/BMP/TIFF image (starts with bytes {data[:8].hex(' ')})"


def _open(data: bytes, path: Path | None) -> Image.Image:
    """``Image.open`` restricted to ``DECODE_FORMATS``, header only.

    Mirrors PIL's own format loop, but without PIL's global bomb check (which would raise before we know the size,
    and obeys the global ``MAX_IMAGE_PIXELS`` rather than ``max_pixels``).
    """
    fp = io.BytesIO(data)
    prefix = data[:16]
    failures = []
    for fmt in DECODE_FORMATS:
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        accepted = accept(prefix) if accept else True
        if isinstance(accepted, str):  # PIL recognises the format but cannot decode it (e.g. built without libwebp)
            failures.append(f"{fmt}: {accepted}")
            continue
        if not accepted:
            continue
        fp.seek(0)
        with _pil_errors(path, fmt):
            try:
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error) as e:  # PIL's "not this format after all"
                failures.append(f"{fmt}: {e}")
    if failures:
        raise DecodeError(f"corrupt image header ({'; '.join(failures)})", path)
    raise DecodeError(_describe_content(data), path)


@contextmanager
def _pil_errors(path: Path | None, fmt: str | None) -> Iterator[None]:
    """Turn whatever PIL raises on bad bytes into a DecodeError; PIL is the boundary with untrusted input."""
    what = fmt or "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(f"PIL refused a possible decompression bomb: {e}", path) from e
    except MemoryError as e:
        raise DecodeError(f"out of memory while decoding the {what}", path) from e
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower():
            detail = re.search(r"\((.+)\)", msg)
            raise DecodeError(f"{what} file is truncated" + (f" ({detail.group(1)})" if detail else ""), path) from e
        raise DecodeError(f"corrupt {what} data ({msg})", path) from e
    except (SyntaxError, ValueError, EOFError, struct.error, TypeError, IndexError) as e:
        # PIL itself reads SyntaxError, IndexError, TypeError and struct.error as "malformed file" (see Image.open)
        raise DecodeError(f"corrupt {what} data ({type(e).__name__}: {e})", path) from e
    except Exception as e:  # any other decoder failure on untrusted bytes is still a bad file, not a crash
        raise DecodeError(f"{what} decoder failed ({type(e).__name__}: {e})", path) from e


def _apply_orientation(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # corrupt EXIF: keep the pixels as stored
        return im.copy()


def _composite(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2))


def _scale16(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.uint32) * 255 + 32767) // 65535


def _int32_to_rgb(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.int64)
    if values.size and values.min() >= 0 and values.max() <= 65535:
        return _grey_to_rgb(_scale16(values))
    span = 2**32 - 1
    return _grey_to_rgb(((values + 2**31) * 255 + span // 2) // span)


def _float_to_rgb(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        unit = values
    elif hi > lo:
        unit = (values - lo) / (hi - lo)
    else:
        unit = np.clip(values, 0.0, 1.0)
    return _grey_to_rgb(np.round(np.where(finite, unit, 0.0) * 255.0))


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    has_key = "transparency" in im.info and mode in {"P", "L", "RGB", "1"}
    if mode in _ALPHA_MODES or has_key:
        return _composite(im)
    if mode == "RGB":
        return im
    if mode == "P" or mode in _DIRECT_MODES:
        return im.convert("RGB")
    if mode.startswith("I;16"):
        return _grey_to_rgb(_scale16(np.asarray(im)))
    if mode == "I":
        return _int32_to_rgb(im)
    if mode == "F":
        return _float_to_rgb(im)
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise DecodeError(f"unsupported pixel mode {mode!r}") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` as stored in the file's header (nothing is decoded), or ``DecodeError``."""
    path = Path(path)
    data = read_file_bytes(path)
    if not data:
        raise DecodeError("empty file (0 bytes)", path)
    return _open(data, path).size


def decode_image(source: str | os.PathLike | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A file path or the file's bytes -> an 8-bit ``"RGB"`` image (rules in the module docstring).

    Raises ``DecodeError`` (one-line ``reason``) for anything that is not a decodable image within ``max_pixels``.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        path, data = None, bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = read_file_bytes(path)
    else:
        raise TypeError(f"decode_image takes a path or bytes, got {type(source).__name__}")
    if not data:
        raise DecodeError("empty file (0 bytes)", path)

    im = _open(data, path)
    fmt = im.format
    _check_size(*im.size, max_pixels, path)
    with _pil_errors(path, fmt):
        im.load()
        im = _apply_orientation(im)
        _check_size(*im.size, max_pixels, path)  # a plugin may change the size while loading
        try:
            rgb = _to_rgb(im)
        except DecodeError as e:
            raise DecodeError(e.reason, path) from e.__cause__
    if rgb.mode != "RGB":  # invariant of _to_rgb; a violation is a bug here, not a bad file
        raise AssertionError(f"decode_image produced mode {rgb.mode!r} from {im.mode!r}")
    return rgb
