"""Write images the way another file was written: the JPEG tables of a real, atomically.

Aligned reconstructions (:mod:`negate.finetune.aligned`) and format-matched fakes (:mod:`negate.data.format_match`)
both make training images that must carry a real's compression history, not a format of their own.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image, JpegImagePlugin


def save_like(image: Image.Image, original: bytes) -> tuple[bytes, str]:
    """Encode ``image`` as ``original`` was: JPEG with its quantisation tables and chroma subsampling, else PNG.
    Returns the bytes and their extension (``jpg`` or ``png``)."""
    buf = io.BytesIO()
    try:
        with Image.open(io.BytesIO(original)) as src:
            if src.format == "JPEG" and getattr(src, "quantization", None):
                sampling = JpegImagePlugin.get_sampling(src)
                kwargs = {"qtables": src.quantization}
                if sampling in (0, 1, 2):
                    kwargs["subsampling"] = sampling
                image.save(buf, format="JPEG", **kwargs)
                return buf.getvalue(), "jpg"
    except (OSError, ValueError, SyntaxError):
        pass
    image.save(buf, format="PNG")
    return buf.getvalue(), "png"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder: a killed run leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
