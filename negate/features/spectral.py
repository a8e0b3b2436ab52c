"""Fourier-spectrum traces: radial profile, high-frequency energy, spectral residual and up-sampling peaks.

Generators up-sample with transposed convolutions or interpolation, which leaves periodic peaks at fractions of
the sampling rate (period 2, 4, 8 pixels) and an unusual fall-off of energy at high frequencies. Everything is
computed from the orthonormal ``rfft2`` of the mean-removed, Hann-windowed grey image and of its median-denoiser
residual (a non-linear high-pass, so its spectrum is not just the grey spectrum times a fixed filter).

``rfft2`` keeps the half plane ``kx >= 0``; since ``|F(-k)| = |F(k)|`` for real input, statistics that should
cover the full plane weight the columns ``0 < kx < W/2`` twice (``half_plane_weights``), and neighbourhoods that
cross the half-plane edge are completed by the mirror symmetry (``pad_half_spectrum``).
"""

from __future__ import annotations

import torch

from negate.features.base import FeatureFamily, constant_tensors, register_feature, to_grey
from negate.features.laplacian import median_residual
from negate.features.stats import moments

# ~1/4 of the 8-bit quantisation noise floor of a windowed orthonormal spectrum (~4e-4): keeps the floor visible
# while float32 FFT round-off (~1e-7 of the spectrum's rms) stays negligible in the log
LOG_EPS = 1e-4
PEAK_FACTORS = (2, 4, 8)
PEAK_AXES = ("h", "v", "d")


def hann2d(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Separable symmetric Hann window (``numpy.hanning``)."""
    wy = torch.hann_window(h, periodic=False, device=device, dtype=dtype) if h > 1 else torch.ones(1, device=device, dtype=dtype)
    wx = torch.hann_window(w, periodic=False, device=device, dtype=dtype) if w > 1 else torch.ones(1, device=device, dtype=dtype)
    return wy[:, None] * wx[None, :]


def windowed_rfft2(grey: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` -> complex ``(..., H, W//2+1)``: orthonormal rfft2 of the mean-removed, Hann-windowed image."""
    h, w = grey.shape[-2:]
    centred = grey - grey.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(centred * hann2d(h, w, grey.device, grey.dtype), norm="ortho")


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|`` from the real and imaginary parts (inductor has no complex kernels: ``spec.abs()`` would be a
    separate unfused pass, this fuses into whatever reads the magnitude)."""
    return torch.view_as_real(spec).square().sum(-1).sqrt()


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    return torch.log(magnitude(spec) + LOG_EPS)


def half_plane_frequencies(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequencies ``(ky (H,1), kx (1,W//2+1))`` of the ``rfft2`` grid."""
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=device).view(-1, 1)
    kx = torch.fft.rfftfreq(w, d=1.0 / w, device=device).view(1, -1)
    return ky, kx


def half_plane_radius(h: int, w: int, device=None) -> torch.Tensor:
    """Radius of each ``rfft2`` bin, normalised so the Nyquist frequency of each axis is 1."""
    ky, kx = half_plane_frequencies(h, w, device)
    return torch.sqrt((ky / (h / 2)) ** 2 + (kx / (w / 2)) ** 2)


def half_plane_weights(h: int, w: int, device=None) -> torch.Tensor:
    """How many full-plane bins each ``rfft2`` column stands for: 1 for ``kx = 0`` (and ``kx = W/2``), else 2."""
    n_cols = w // 2 + 1
    weights = torch.full((n_cols,), 2.0, device=device)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights.view(1, -1).expand(h, n_cols)


def radial_profile(values: torch.Tensor, n_bins: int, full_width: int) -> torch.Tensor:
    """Azimuthal mean of an ``rfft2``-layout map ``(N, H, W//2+1)`` -> ``(N, n_bins)``.

    Bin ``b`` holds the frequencies with normalised radius in ``[b/n_bins, (b+1)/n_bins)`` (corners beyond the
    Nyquist circle are dropped); the mean is the one over the full ``H x W`` plane (fftshifted numpy equivalent).
    """
    n, h, w2 = values.shape
    radius = half_plane_radius(h, full_width, values.device)
    weights = half_plane_weights(h, full_width, values.device).to(values.dtype)
    bins = torch.floor(radius * n_bins).long()
    inside = bins < n_bins
    bins = torch.where(inside, bins, torch.full_like(bins, n_bins)).reshape(-1)
    weights = torch.where(inside, weights, torch.zeros_like(weights)).reshape(-1)
    counts = torch.zeros(n_bins + 1, dtype=values.dtype, device=values.device).index_add_(0, bins, weights)
    sums = torch.zeros(n, n_bins + 1, dtype=values.dtype, device=values.device)
    sums.index_add_(1, bins, values.reshape(n, -1) * weights)
    return (sums / counts.clamp_min(1.0))[:, :n_bins]


@torch.compiler.disable  # eager, as ``pad_eager``: fused into its readers, the gathers would stop vectorisation
def pad_half_spectrum(m: torch.Tensor, p: int) -> torch.Tensor:
    """Pad an ``rfft2``-layout map ``(N, H, W//2+1)`` (even W) by ``p`` on every side, exactly as the full periodic
    plane continues: rows wrap around, and the columns beyond ``kx = 0`` and ``kx = W/2`` are the mirror
    ``(ky, kx) -> (-ky, -kx)`` of the columns inside."""
    h, w2 = m.shape[-2:]
    last = w2 - 1  # index of kx = W/2
    neg_rows = (-torch.arange(h, device=m.device)) % h
    out = m.new_empty(*m.shape[:-2], h + 2 * p, w2 + 2 * p)
    out[..., p : p + h, :p] = m[..., 1 : p + 1].flip(-1)[..., neg_rows, :]
    out[..., p : p + h, p : p + w2] = m
    out[..., p : p + h, p + w2 :] = m[..., last - p : last].flip(-1)[..., neg_rows, :]
    out[..., :p, :] = out[..., h : h + p, :]  # rows wrap: above row 0 come the last rows
    out[..., p + h :, :] = out[..., p : 2 * p, :]
    return out


def local_mean(m: torch.Tensor, k: int) -> torch.Tensor:
    """``k x k`` (odd) mean of an ``rfft2``-layout map ``(N, H, W//2+1)`` on the periodic full plane."""
    h, w2 = m.shape[-2:]
    padded = pad_half_spectrum(m, k // 2)
    rows = sum(padded[..., i : i + h, :] for i in range(k))
    return sum(rows[..., i : i + w2] for i in range(k)) / (k * k)


def spectral_residual(logmag: torch.Tensor) -> torch.Tensor:
    """Log spectrum minus its 3x3 local average (Hou & Zhang's spectral residual)."""
    return logmag - local_mean(logmag, 3)


def peak_contrast(logmag: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Log-magnitude at the up-sampling frequencies ``(0, W/f)``, ``(H/f, 0)``, ``(H/f, W/f)`` for f in 2, 4, 8,
    minus the mean of the ring between the 3x3 and 7x7 neighbourhoods (the Hann main lobe spans +-1 bin).
    ``(N, 9)`` ordered factor-major, then h / v / d."""
    win = logmag.reshape(logmag.shape[0], -1)[:, _peak_windows(h, w, logmag.device)]  # (N, 9, 7, 7)
    ring = (win.sum(dim=(-2, -1)) - win[..., 2:5, 2:5].sum(dim=(-2, -1))) / 40.0
    return win[..., 3, 3] - ring


@constant_tensors
def _peak_windows(h: int, w: int, device: str) -> torch.Tensor:
    """Flat ``rfft2``-layout indices ``(9, 7, 7)`` of the 7x7 full-plane neighbourhood of each up-sampling frequency
    (the same continuation as ``pad_half_spectrum``: wrap rows, mirror ``(ky, kx) -> (-ky, -kx)`` beyond the half
    plane)."""
    w2 = w // 2 + 1
    index = []
    for f in PEAK_FACTORS:
        fy, fx = h // f, w // f
        for y, x in ((0, fx), (fy, 0), (fy, fx)):
            for dy in range(-3, 4):
                for dx in range(-3, 4):
                    ky, kx = (y + dy) % h, (x + dx) % w
                    if kx > w // 2:
                        ky, kx = (-ky) % h, w - kx
                    index.append(ky * w2 + kx)
    return torch.tensor(index, device=device).view(9, 7, 7)


def hf_energy_ratio(mag: torch.Tensor, full_width: int, cutoff: float = 0.5) -> torch.Tensor:
    """Share of (non-DC) spectral energy at normalised radius above ``cutoff``."""
    h = mag.shape[-2]
    radius = half_plane_radius(h, full_width, mag.device)
    weights = half_plane_weights(h, full_width, mag.device).to(mag.dtype)
    power = mag.square() * weights
    high = (power * (radius > cutoff)).sum(dim=(-2, -1))
    total = (power * (radius > 0)).sum(dim=(-2, -1))
    return high / total.clamp_min(1e-12)


@register_feature("spectral")
class SpectralFeatures(FeatureFamily):
    """Radial log-spectrum profile, HF energy ratio, spectral-residual stats and up-sampling peaks (grey + residual)."""

    version = "3"  # 3: written for torch.compile (fused statistics); float round-off differs
    pool = ("mean", "max")

    def __init__(self, n_bins: int = 32, hf_cutoff: float = 0.5) -> None:
        super().__init__()
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = int(n_bins)
        self.hf_cutoff = float(hf_cutoff)
        self.hparams = {"n_bins": self.n_bins, "hf_cutoff": self.hf_cutoff}

    def feature_names(self) -> list[str]:
        names = []
        for src in ("grey", "resid"):
            names += [f"{self.name}.{src}_radial_{i:02d}" for i in range(self.n_bins)]
            names.append(f"{self.name}.{src}_hf_ratio")
            names += [f"{self.name}.{src}_sr_{s}" for s in ("std", "skew", "kurt", "max")]
            names += [f"{self.name}.{src}_peak_{f}_{a}" for f in PEAK_FACTORS for a in PEAK_AXES]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n, _, h, w = x.shape
        if h % 8 or w % 8:
            raise ValueError(f"spectral features need patch sides that are multiples of 8, got {h}x{w}")
        grey = to_grey(x)
        out = []
        for img in (grey, median_residual(grey)):
            mag = magnitude(windowed_rfft2(img[:, 0]))
            logmag = torch.log(mag + LOG_EPS)
            sr = spectral_residual(logmag)
            m = moments(sr, (-2, -1))
            out += [
                radial_profile(logmag, self.n_bins, w),
                hf_energy_ratio(mag, w, self.hf_cutoff).unsqueeze(1),
                torch.stack([m["std"], m["skew"], m["kurt"], sr.amax((-2, -1))], dim=1),
                peak_contrast(logmag, h, w),
            ]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
