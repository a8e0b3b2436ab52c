"""Deterministic image perturbations named by short spec strings, for robustness tests and augmentation.

Grammar: a view is ``op[+op...]`` applied left to right, each op ``name:arg``:

==================  ==================================================================================
``jpeg:Q``          JPEG encode/decode at quality Q (1-100, 4:2:0 chroma), in memory
``webp:Q``          lossy WebP encode/decode at quality Q (1-100)
``reencode:CODEC``  format-neutral re-encode: ``jpegQ``, ``webpQ`` or ``png``. Applied to every image,
                    real or fake, so all pass through the same codec and the original container stops
                    being a cue. ``reencode:jpeg90`` gives exactly the pixels of ``jpeg:90``.
``downscale:F``     resize by factor F in (0, 1] with an antialiased (Lanczos) filter
``crop:A``          centre crop keeping the fraction A in (0, 1] of the image AREA (sides scale by sqrt(A))
``blur:S``          Gaussian blur with standard deviation S pixels (S > 0)
``lowpass:N``       shrink so the short side is N px (Lanczos), then back to the original size (bicubic):
                    only content survives, every generation trace is gone (the content-only baseline)
==================  ==================================================================================

``""``, ``"none"`` and ``"identity"`` mean no change. Every op is a pure function of (pixels, spec), so a view
can be cached under (file hash, spec), and :func:`random_view` turns a seed into a spec for the same purpose.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageFilter

IDENTITY_SPECS = ("", "none", "identity")

# The standard robustness suite: spec strings, which double as display names.
ROBUSTNESS_SUITE: tuple[str, ...] = (
    "jpeg:95",
    "jpeg:75",
    "jpeg:50",
    "downscale:0.75",
    "downscale:0.5",
    "crop:0.5",
    "blur:1",
    "webp:80",
)


@dataclass(frozen=True)
class Op:
    """One perturbation step. ``codec`` is used by encode ops (jpeg / webp / png); ``value`` by the others."""

    name: str
    value: float = 0.0
    codec: str = ""

    def __str__(self) -> str:
        if self.name == "reencode":
            return f"reencode:{self.codec}" + ("" if self.codec == "png" else f"{int(self.value)}")
        if self.name in ("jpeg", "webp", "lowpass"):
            return f"{self.name}:{int(self.value)}"
        return f"{self.name}:{_fmt(self.value)}"

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.name in ("jpeg", "webp", "reencode"):
            return _encode_decode(img, self.codec, int(self.value))
        if self.name == "downscale":
            if self.value == 1.0:
                return img
            w, h = img.size
            size = (max(1, round(w * self.value)), max(1, round(h * self.value)))
            return img.resize(size, Image.Resampling.LANCZOS)
        if self.name == "crop":
            w, h = img.size
            side = math.sqrt(self.value)
            cw, ch = max(1, round(w * side)), max(1, round(h * side))
            left, top = (w - cw) // 2, (h - ch) // 2
            return img.crop((left, top, left + cw, top + ch))
        if self.name == "lowpass":
            w, h = img.size
            scale = self.value / min(w, h)
            if scale >= 1:
                return img
            small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
            return small.resize((w, h), Image.Resampling.BICUBIC)
        if self.name == "blur":
            # Pillow's GaussianBlur ``radius`` is the standard deviation of the kernel.
            return img.filter(ImageFilter.GaussianBlur(radius=self.value))
        raise ValueError(f"unknown op {self.name!r}")  # unreachable: parse_view validates names


def _fmt(x: float) -> str:
    """Short, stable text for a float: 0.5 -> '0.5', 1.0 -> '1', 0.123456 -> '0.123'."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _encode_decode(img: Image.Image, codec: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    elif codec == "webp":
        img.save(buf, format="WEBP", quality=quality, method=4, lossless=False)
    elif codec == "png":
        img.save(buf, format="PNG")
    else:  # unreachable: parse_view validates codecs
        raise ValueError(f"unknown codec {codec!r}")
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _number(op: str, arg: str) -> float:
    try:
        x = float(arg)
    except ValueError:
        raise ValueError(f"view op {op!r}: argument {arg!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"view op {op!r}: argument must be finite")
    return x


def _quality(op: str, arg: str) -> int:
    q = _number(op, arg)
    if q != int(q) or not 1 <= q <= 100:
        raise ValueError(f"view op {op!r}: quality must be an integer in 1..100, got {arg!r}")
    return int(q)


def _parse_op(token: str) -> Op:
    name, sep, arg = token.partition(":")
    name, arg = name.strip().lower(), arg.strip().lower()
    if not sep or not arg:
        raise ValueError(f"view op {token!r} needs the form name:arg (e.g. jpeg:75, downscale:0.5)")
    if name in ("jpeg", "webp"):
        return Op(name, _quality(token, arg), codec=name)
    if name == "reencode":
        if arg == "png":
            return Op("reencode", 0.0, codec="png")
        m = re.fullmatch(r"(jpeg|jpg|webp)(\d+)", arg)
        if not m:
            raise ValueError(f"view op {token!r}: reencode takes jpegQ, webpQ or png (e.g. reencode:jpeg90)")
        codec = "jpeg" if m.group(1) in ("jpeg", "jpg") else "webp"
        return Op("reencode", _quality(token, m.group(2)), codec=codec)
    if name in ("downscale", "crop"):
        x = _number(token, arg)
        if not 0 < x <= 1:
            raise ValueError(f"view op {token!r}: {name} fraction must be in (0, 1]")
        return Op(name, x)
    if name == "lowpass":
        x = _number(token, arg)
        if x != int(x) or x < 1:
            raise ValueError(f"view op {token!r}: lowpass takes a short side in pixels (an integer >= 1)")
        return Op(name, x)
    if name == "blur":
        x = _number(token, arg)
        if x <= 0:
            raise ValueError(f"view op {token!r}: blur sigma must be > 0")
        return Op(name, x)
    raise ValueError(f"unknown view op {name!r} in {token!r}; known: jpeg, webp, reencode, downscale, crop, blur, lowpass")


def parse_view(spec: str) -> list[Op]:
    """Parse ``"jpeg:75+downscale:0.5"`` into ops; raises ``ValueError`` on anything malformed."""
    if not isinstance(spec, str):
        raise ValueError(f"view spec must be a string, got {type(spec).__name__}")
    if spec.strip().lower() in IDENTITY_SPECS:
        return []
    tokens = spec.split("+")
    if any(not t.strip() for t in tokens):
        raise ValueError(f"view spec {spec!r} has an empty op (stray '+')")
    return [_parse_op(t) for t in tokens]


def canonical_view(spec: str) -> str:
    """Normalised spelling of a spec (``"JPEG:75.0 + crop:0.50"`` -> ``"jpeg:75+crop:0.5"``), for cache keys."""
    ops = parse_view(spec)
    return "+".join(str(op) for op in ops) if ops else "none"


def apply_view(img: Image.Image, spec: str) -> Image.Image:
    """Return a new RGB image with the view applied; the input is never modified."""
    ops = parse_view(spec)
    out = img.convert("RGB") if img.mode != "RGB" else img.copy()
    for op in ops:
        out = op(out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Random views for augmentation
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges for :func:`random_view`. Ops are drawn independently and applied in the order
    crop -> downscale -> blur -> compression, like an image that is cropped, resized and re-saved for the web."""

    p_crop: float = 0.2
    crop_area: tuple[float, float] = (0.5, 0.9)
    p_downscale: float = 0.3
    downscale: tuple[float, float] = (0.5, 0.9)
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    p_webp: float = 0.0
    webp_quality: tuple[int, int] = (60, 95)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not 0 <= v <= 1:
                    raise ValueError(f"{f.name} must be a probability in [0, 1], got {v}")
            else:
                lo, hi = v
                if lo > hi:
                    raise ValueError(f"{f.name} range must be (low, high) with low <= high, got {v}")
        # Validate the extremes through the parser so a bad range fails here, not deep in a data loader.
        for spec in (
            f"crop:{self.crop_area[0]}",
            f"crop:{self.crop_area[1]}",
            f"downscale:{self.downscale[0]}",
            f"downscale:{self.downscale[1]}",
            f"blur:{self.blur_sigma[0]}",
            f"jpeg:{self.jpeg_quality[0]}",
            f"jpeg:{self.jpeg_quality[1]}",
            f"webp:{self.webp_quality[0]}",
            f"webp:{self.webp_quality[1]}",
        ):
            parse_view(spec)


def _as_config(cfg) -> AugmentConfig:
    if cfg is None:
        return AugmentConfig()
    if isinstance(cfg, AugmentConfig):
        return cfg
    if not isinstance(cfg, Mapping):  # OmegaConf DictConfig is a Mapping; anything else is an error
        raise ValueError(f"augment config must be a dict or AugmentConfig, got {type(cfg).__name__}")
    known = {f.name for f in fields(AugmentConfig)}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown augment config keys {sorted(unknown)}; known: {sorted(known)}")
    return AugmentConfig(**{k: tuple(v) if not isinstance(v, (int, float)) else v for k, v in cfg.items()})


def random_view(seed: int, cfg: AugmentConfig | Mapping | None = None) -> str:
    """Draw a view spec from ``seed`` alone (same seed and config -> same spec); ``"none"`` when no op fires."""
    c = _as_config(cfg)
    rng = np.random.default_rng(seed)
    # Draw every coin and value in a fixed order so a changed probability does not reshuffle the other ops.
    coins = rng.random(5)
    crop = rng.uniform(*c.crop_area)
    down = rng.uniform(*c.downscale)
    sigma = rng.uniform(*c.blur_sigma)
    jq = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
    wq = int(rng.integers(c.webp_quality[0], c.webp_quality[1] + 1))
    ops = []
    if coins[0] < c.p_crop:
        ops.append(f"crop:{_fmt(max(crop, 1e-3))}")  # floor keeps the 3-decimal text a valid (non-zero) argument
    if coins[1] < c.p_downscale:
        ops.append(f"downscale:{_fmt(max(down, 1e-3))}")
    if coins[2] < c.p_blur:
        ops.append(f"blur:{_fmt(max(sigma, 1e-3))}")
    if coins[3] < c.p_jpeg:
        ops.append(f"jpeg:{jq}")
    elif coins[4] < c.p_webp:  # one lossy codec at most
        ops.append(f"webp:{wq}")
    return "+".join(ops) if ops else "none"


def augment_config_dict(cfg: AugmentConfig | None = None) -> dict:
    """Plain-dict form of a config (for logging and cache keys)."""
    return asdict(cfg or AugmentConfig())
