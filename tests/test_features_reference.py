"""Each forensic feature family against an independent reference (numpy / scipy / PyWavelets / scikit-image /
torchvision) on real photographs that ship with scikit-image (astronaut, camera, coffee, chelsea)."""

from __future__ import annotations

import warnings

import kornia
import numpy as np
import pytest
import pywt
import scipy.fft
import scipy.ndimage as ndi
import scipy.stats
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from skimage import data
from skimage.feature import local_binary_pattern

from negate.features.base import to_grey
from negate.features.dct import DCTFeatures, block_dct8, zigzag_order
from negate.features.laplacian import LaplacianResidual, laplacian_residual, median3x3
from negate.features.lbp import LBPFeatures, code_histogram, lbp_codes
from negate.features.npr import NPRFeatures, npr_residual
from negate.features.resize_crop import SUMMARIES, ResizeCropConsistency, crop_boxes, trace_summaries
from negate.features.spectral import (
    LOG_EPS,
    SpectralFeatures,
    hf_energy_ratio,
    local_mean,
    log_magnitude,
    peak_contrast,
    radial_profile,
    spectral_residual,
    windowed_rfft2,
)
from negate.features.wavelet import WaveletFeatures, haar_dwt2, haar_wavedec2

BT601 = np.array([0.299, 0.587, 0.114])
K8 = np.array([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]])


def _rgb(name: str) -> np.ndarray:
    img = getattr(data, name)()
    return np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: _rgb(name) for name in ("astronaut", "camera", "coffee", "chelsea")}


def patches_of(img: np.ndarray, size: int, origins) -> torch.Tensor:
    """(N, 3, size, size) float32 in [0, 1] cut from a uint8 HxWx3 photo."""
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    return torch.stack([t[:, y : y + size, x : x + size] for y, x in origins])


@pytest.fixture(scope="module")
def batch(photos) -> torch.Tensor:
    """Six real 128x128 patches: textured, flat, saturated and smooth regions of four photographs."""
    return torch.cat(
        [
            patches_of(photos["astronaut"], 128, [(0, 0), (200, 160)]),
            patches_of(photos["camera"], 128, [(40, 200), (300, 96)]),
            patches_of(photos["coffee"], 128, [(64, 320)]),
            patches_of(photos["chelsea"], 128, [(96, 128)]),
        ]
    )


def grey64(x: torch.Tensor) -> np.ndarray:
    """The families' float32 BT.601 grey, as float64 numpy (N, S, S)."""
    return to_grey(x)[:, 0].double().numpy()


def moments(v: np.ndarray) -> tuple[float, float, float, float]:
    return v.mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)


def columns(family, out: torch.Tensor, prefix: str) -> np.ndarray:
    names = family.feature_names()
    idx = [i for i, n in enumerate(names) if n.startswith(f"{family.name}.{prefix}")]
    assert idx, prefix
    return out[:, idx].double().numpy()


# ----------------------------------------------------------------------------------------------------- spectral


def np_log_spectrum(g: np.ndarray) -> np.ndarray:
    """Full-plane (unshifted) log|FFT| of the mean-removed, Hann-windowed image."""
    s = g.shape[0]
    win = np.outer(np.hanning(s), np.hanning(s))
    f = np.fft.fft2((g - g.mean()) * win, norm="ortho")
    return np.log(np.abs(f) + LOG_EPS), np.abs(f)


def np_radius(s: int) -> np.ndarray:
    k = np.fft.fftfreq(s, 1.0 / s)
    return np.sqrt((k[:, None] / (s / 2)) ** 2 + (k[None, :] / (s / 2)) ** 2)


def np_radial(logmag: np.ndarray, n_bins: int) -> np.ndarray:
    bins = np.floor(np_radius(logmag.shape[0]) * n_bins).astype(int)
    return np.array([logmag[bins == b].mean() for b in range(n_bins)])


def np_peaks(logmag: np.ndarray) -> np.ndarray:
    s = logmag.shape[0]
    ring = (49 * ndi.uniform_filter(logmag, 7, mode="wrap") - 9 * ndi.uniform_filter(logmag, 3, mode="wrap")) / 40
    c = logmag - ring
    return np.array([v for f in (2, 4, 8) for v in (c[0, s // f], c[s // f, 0], c[s // f, s // f])])


def np_spectral_block(g: np.ndarray, n_bins: int) -> np.ndarray:
    """The 1 + n_bins + 1 + 4 + 9 spectral columns of one source image, from the full numpy spectrum."""
    s = g.shape[0]
    logmag, mag = np_log_spectrum(g)
    r = np_radius(s)
    power = mag**2
    hf = power[r > 0.5].sum() / power[r > 0].sum()
    sr = logmag - ndi.uniform_filter(logmag, 3, mode="wrap")
    half = sr[:, : s // 2 + 1].ravel()  # the family summarises the rfft2 half plane
    _, std, skew, kurt = moments(half)
    return np.concatenate([np_radial(logmag, n_bins), [hf, std, skew, kurt, half.max()], np_peaks(logmag)])


def test_rfft2_and_radial_profile_match_numpy(batch):
    g = grey64(batch)
    spec = windowed_rfft2(to_grey(batch)[:, 0])
    for i in range(len(g)):
        logmag, _ = np_log_spectrum(g[i])
        half = np.fft.rfft2((g[i] - g[i].mean()) * np.outer(np.hanning(128), np.hanning(128)), norm="ortho")
        np.testing.assert_allclose(spec[i].numpy(), half, atol=1e-5)
        ours = radial_profile(log_magnitude(spec[i : i + 1]), 24, 128)[0].numpy()
        np.testing.assert_allclose(ours, np_radial(logmag, 24), atol=1e-4)


def test_local_means_spectral_residual_and_peaks_match_full_plane(batch):
    """The half-plane neighbourhood operations, fed numpy's own float64 spectrum, equal the full-plane ones."""
    g = grey64(batch)
    for i in range(len(g)):
        logmag, mag = np_log_spectrum(g[i])
        half = torch.from_numpy(logmag[:, :65]).unsqueeze(0)
        for k in (3, 5, 7):
            np.testing.assert_allclose(local_mean(half, k)[0].numpy(), ndi.uniform_filter(logmag, k, mode="wrap")[:, :65], atol=1e-10)
        sr = logmag - ndi.uniform_filter(logmag, 3, mode="wrap")
        np.testing.assert_allclose(spectral_residual(half)[0].numpy(), sr[:, :65], atol=1e-10)
        np.testing.assert_allclose(peak_contrast(half, 128, 128)[0].numpy(), np_peaks(logmag), atol=1e-10)
        r = np_radius(128)
        ref = (mag**2)[r > 0.5].sum() / (mag**2)[r > 0].sum()
        ours = hf_energy_ratio(torch.from_numpy(mag[:, :65]).unsqueeze(0), 128).item()
        assert ours == pytest.approx(ref, rel=1e-10)


def test_spectral_family_matches_numpy(batch):
    fam = SpectralFeatures(n_bins=16)
    out = fam(batch)
    g = grey64(batch)
    med = g - ndi.median_filter(g, size=(1, 3, 3), mode="mirror")
    for i in range(len(g)):
        ref = np.concatenate([np_spectral_block(g[i], 16), np_spectral_block(med[i], 16)])
        # float32 pipeline vs float64 reference: averaged columns agree to 1e-4; single-bin log values (peaks,
        # spectral-residual max) of near-silent bins carry float32 FFT round-off, hence the looser absolute bound
        single_bin = np.array(["_peak_" in n or n.endswith("_sr_max") for n in fam.feature_names()])
        ours = out[i].double().numpy()
        np.testing.assert_allclose(ours[~single_bin], ref[~single_bin], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours[single_bin], ref[single_bin], atol=2e-3)


def test_periodic_upsampling_traces_raise_their_peaks(batch):
    """A transposed-convolution-like periodic gain (period 2 across columns, period 4 down rows) must stand out at
    exactly the matching frequency, in both the grey and the residual spectrum."""
    x = batch[:2]
    cols = torch.arange(128).view(1, 1, 1, -1)
    rows = torch.arange(128).view(1, 1, -1, 1)
    fam = SpectralFeatures()
    names = fam.feature_names()
    clean = fam(x)
    for pattern, column in ((torch.cos(torch.pi * cols), "peak_2_h"), (torch.cos(torch.pi * rows / 2), "peak_4_v")):
        traced = fam((x * (1 + 0.05 * pattern)).clamp(0, 1))
        for src in ("grey", "resid"):
            i = names.index(f"spectral.{src}_{column}")
            assert (traced[:, i] > clean[:, i] + 1.0).all(), (src, column, traced[:, i], clean[:, i])


# ---------------------------------------------------------------------------------------------------- laplacian


def np_residual_stats(r: np.ndarray, edges) -> np.ndarray:
    """r (3, S, S) -> per-channel [mean|r|, std, skew, kurt, hist...] then 3 correlations."""
    per = []
    for c in range(3):
        v = r[c].ravel()
        _, std, skew, kurt = moments(v)
        hist, _ = np.histogram(np.abs(v) * 255, bins=[0.0, *edges, np.inf])
        per += [np.abs(v).mean(), std, skew, kurt, *(hist / v.size)]
    flat = r.reshape(3, -1)
    corr = np.corrcoef(flat)
    return np.array(per + [corr[0, 1], corr[0, 2], corr[1, 2]])


def test_median_and_laplacian_residuals_match_scipy(batch):
    x = batch.double().numpy()
    np.testing.assert_array_equal(median3x3(batch).numpy(), ndi.median_filter(batch.numpy(), size=(1, 1, 3, 3), mode="mirror"))
    lap = np.stack([[ndi.correlate(x[n, c], K8, mode="mirror") for c in range(3)] for n in range(len(x))])
    np.testing.assert_allclose(laplacian_residual(batch).double().numpy(), lap, atol=1e-5)
    kornia_lap = kornia.filters.laplacian(batch[:2, :, :40, :40], 3, border_type="reflect", normalized=False)
    torch.testing.assert_close(laplacian_residual(batch[:2, :, :40, :40]), kornia_lap, atol=1e-5, rtol=1e-5)


def test_laplacian_family_matches_scipy(batch):
    fam = LaplacianResidual()
    out = fam(batch).double().numpy()
    edges = fam.hparams["edges"]
    x = batch.double().numpy()
    for n in range(len(x)):
        lap = np.stack([ndi.correlate(x[n, c], K8, mode="mirror") for c in range(3)])
        med = x[n] - ndi.median_filter(x[n], size=(1, 3, 3), mode="mirror")
        ref = np.concatenate([np_residual_stats(lap, edges), np_residual_stats(med, edges)])
        np.testing.assert_allclose(out[n], ref, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------- lbp


def grey_levels(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float64) @ BT601).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
@pytest.mark.parametrize("p, r", [(8, 1.0), (16, 2.0), (24, 3.0), (8, 1.5)])
def test_lbp_codes_equal_skimage(photos, name, p, r):
    g = grey_levels(photos[name])[:192, :256]
    ref = local_binary_pattern(g, p, r, method="uniform")
    for dtype in (torch.float32, torch.float64):
        ours = lbp_codes(torch.from_numpy(g).to(dtype)[None], p, r)[0].numpy()
        assert (ours == ref).all(), f"{(ours != ref).sum()} codes differ ({dtype})"
    # the Laplacian residual: integer-valued, signed, with many exact ties
    res = ndi.correlate(g.astype(np.float64), K8, mode="mirror")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about float input
        ref = local_binary_pattern(res, p, r, method="uniform")
    ours = lbp_codes(torch.from_numpy(res).float()[None], p, r)[0].numpy()
    assert (ours == ref).all(), f"{(ours != ref).sum()} residual codes differ"


def test_lbp_family_matches_skimage_histograms(batch):
    fam = LBPFeatures()
    out = fam(batch).double().numpy()
    g8 = torch.round(to_grey(batch)[:, 0] * 255).numpy().astype(np.uint8)
    for n in range(len(g8)):
        res = ndi.correlate(g8[n].astype(np.float64), K8, mode="mirror")
        ref = []
        for src in (g8[n], res):
            for p, r in fam.radii:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    codes = local_binary_pattern(src, p, r, method="uniform")
                b = int(np.ceil(r))
                inside = codes[b:-b, b:-b]
                ref.append(np.bincount(inside.astype(int).ravel(), minlength=p + 2) / inside.size)
        np.testing.assert_allclose(out[n], np.concatenate(ref), atol=1e-6)


def test_code_histogram_counts():
    codes = torch.tensor([[[0, 1, 1], [2, 2, 2], [9, 1, 0]]], dtype=torch.uint8)
    np.testing.assert_allclose(code_histogram(codes, 10, 0)[0].numpy(), np.bincount(codes.numpy().ravel(), minlength=10) / 9)
    assert code_histogram(codes, 10, 1)[0, 2].item() == 1.0  # only the centre pixel remains


# ------------------------------------------------------------------------------------------------------ wavelet


@pytest.mark.parametrize("shape", [(128, 128), (127, 90), (33, 64)])
def test_haar_dwt2_matches_pywt(photos, shape):
    g = grey_levels(photos["coffee"])[: shape[0], : shape[1]].astype(np.float64) / 255
    ca, (ch, cv, cd) = pywt.dwt2(g, "haar")
    ta, (th, tv, td) = haar_dwt2(torch.from_numpy(g).float())
    for ref, ours in ((ca, ta), (ch, th), (cv, tv), (cd, td)):
        np.testing.assert_allclose(ours.double().numpy(), ref, atol=1e-6)
    ref = pywt.wavedec2(g, "haar", level=3)
    ours = haar_wavedec2(torch.from_numpy(g), 3)
    np.testing.assert_allclose(ours[0].numpy(), ref[0], atol=1e-12)
    for ref_level, our_level in zip(ref[1:], ours[1:]):
        for r_band, o_band in zip(ref_level, our_level):
            np.testing.assert_allclose(o_band.numpy(), r_band, atol=1e-12)


def test_wavelet_family_matches_pywt(batch):
    fam = WaveletFeatures(levels=3)
    out = fam(batch).double().numpy()
    g = grey64(batch) * 255
    for n in range(len(g)):
        coeffs = pywt.wavedec2(g[n], "haar", level=3)
        approx = g[n]
        ref, mean_abs = [], []
        for lvl in range(1, 4):
            approx, det = pywt.dwt2(approx, "haar")
            assert np.allclose(det[0], coeffs[-lvl][0])
            level_abs = []
            for band in det:
                v = band.ravel()
                ref += [np.abs(v).mean(), v.std(), scipy.stats.kurtosis(v)]
                level_abs.append(np.abs(v).mean())
            mean_abs.append(level_abs)
            detail = sum((b**2).mean() for b in det)
            ref.append(detail / (detail + approx.var()))
        for lvl in range(2):
            ref += list(np.log2((np.array(mean_abs[lvl + 1]) + 1e-3) / (np.array(mean_abs[lvl]) + 1e-3)))
        np.testing.assert_allclose(out[n], ref, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------- dct

JPEG_ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63,
]  # the JPEG standard's scan order (ITU-T T.81, figure A.6) as row * 8 + col


def scipy_blocks(luma: np.ndarray) -> np.ndarray:
    s = luma.shape[0]
    blocks = luma.reshape(s // 8, 8, s // 8, 8).transpose(0, 2, 1, 3)
    return scipy.fft.dctn(blocks, axes=(2, 3), norm="ortho")


def test_zigzag_is_jpeg_order():
    assert [i * 8 + j for i, j in zigzag_order(8)] == JPEG_ZIGZAG


def test_block_dct8_matches_scipy(batch):
    g = grey64(batch)
    ours = block_dct8(to_grey(batch)[:, 0]).double().numpy()
    for n in range(len(g)):
        np.testing.assert_allclose(ours[n], scipy_blocks(g[n]), atol=1e-5)


def test_dct_family_matches_scipy(batch):
    fam = DCTFeatures(n_freq=12)
    out = fam(batch).double().numpy()
    g = grey64(batch) * 255 - 128
    edges = fam.hparams["edges"]
    for n in range(len(g)):
        coef = scipy_blocks(g[n]).reshape(-1, 64)[:, JPEG_ZIGZAG]
        coef = np.round(coef * 1024) / 1024  # the family's documented snap of exact k/8 values
        ac = coef[:, 1:]
        sel = ac[:, :12]
        per_freq = np.stack([np.abs(sel).mean(0), sel.std(0), (np.abs(sel) < 0.5).mean(0)], -1).ravel()
        a = np.abs(ac).ravel()
        hist = np.histogram(a, bins=[0.0, *edges, np.inf])[0] / a.size
        big = a[a >= 1]
        digits = np.array([int(f"{v:.15e}"[0]) for v in big])
        share = np.bincount(digits, minlength=10)[1:] / len(big)
        benford = np.log10(1 + 1 / np.arange(1, 10))
        ref = np.concatenate([per_freq, hist, share, [((share - benford) ** 2 / benford).sum(), len(big) / a.size]])
        # count-based shares may move by one coefficient where float32 and float64 straddle 0.5 or a digit boundary
        np.testing.assert_allclose(out[n], ref, rtol=1e-3, atol=3.0 / a.size)


# ---------------------------------------------------------------------------------------------------------- npr


def np_bilinear_up2(d: np.ndarray) -> np.ndarray:
    """Half-pixel-centred 2x linear up-sampling along both axes with edge clamping (align_corners=False)."""

    def up_axis(a, axis):
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        out = np.empty((2 * a.shape[0],) + a.shape[1:])
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, 0, axis)

    return up_axis(up_axis(d, -2), -1)


def test_npr_residuals_match_numpy(batch):
    x = batch.double().numpy()
    near = x - x[..., ::2, ::2].repeat(2, -2).repeat(2, -1)
    np.testing.assert_allclose(npr_residual(batch, "nearest").double().numpy(), near, atol=1e-6)
    s = x.shape[-1]
    down = x.reshape(*x.shape[:2], s // 2, 2, s // 2, 2).mean((3, 5))
    np.testing.assert_allclose(npr_residual(batch, "bilinear").double().numpy(), x - np_bilinear_up2(down), atol=1e-5)


def test_npr_family_matches_numpy(batch):
    fam = NPRFeatures()
    out = fam(batch).double().numpy()
    x = batch.double().numpy() * 255
    s = x.shape[-1]
    for n in range(len(x)):
        near = x[n] - x[n][:, ::2, ::2].repeat(2, -2).repeat(2, -1)
        phases = {ph: near[:, int(ph[0]) :: 2, int(ph[1]) :: 2].reshape(3, -1) for ph in ("01", "10", "11")}
        ref = [np.abs(phases[ph][c]).mean() for c in range(3) for ph in ("01", "10", "11")]
        nz = np.concatenate([phases["01"], phases["10"], phases["11"]], axis=1)
        ref += [v for c in range(3) for v in (nz[c].std(), scipy.stats.kurtosis(nz[c]))]
        bil = x[n] - np_bilinear_up2(x[n].reshape(3, s // 2, 2, s // 2, 2).mean((2, 4)))
        ref += [v for c in range(3) for v in (np.abs(bil[c]).mean(), *moments(bil[c].ravel())[1:])]
        grey = np.tensordot(BT601, bil, axes=1)
        ref += [np.abs(grey[i::2, j::2]).mean() for i in (0, 1) for j in (0, 1)]
        for r in (nz, bil.reshape(3, -1)):
            c = np.corrcoef(r)
            ref += [c[0, 1], c[0, 2], c[1, 2]]
        np.testing.assert_allclose(out[n], ref, rtol=1e-3, atol=1e-4)


# -------------------------------------------------------------------------------------------------- resize_crop


def test_crop_boxes_are_torchvision_random_resized_crop():
    for seed in (0, 7):
        torch.manual_seed(seed)
        ref = [T.RandomResizedCrop.get_params(torch.zeros(1, 96, 128), [0.25, 1.0], [3 / 4, 4 / 3]) for _ in range(12)]
        assert crop_boxes(96, 128, 12, (0.25, 1.0), (3 / 4, 4 / 3), seed) == ref


def np_trace_summaries(g: np.ndarray, n_bins: int = 16) -> np.ndarray:
    g = g * 255
    s = g.shape[0]
    lap = ndi.correlate(g, K8, mode="mirror").ravel()
    med = (g - ndi.median_filter(g, 3, mode="mirror")).ravel()
    logmag, mag = np_log_spectrum(g)
    r = np_radius(s)
    hf = (mag**2)[r > 0.5].sum() / (mag**2)[r > 0].sum()
    prof = np_radial(logmag, n_bins)
    half = n_bins // 2
    slope = (prof[-1] - prof[half]) / ((n_bins - 1 - half) / n_bins)
    near = g - g[::2, ::2].repeat(2, 0).repeat(2, 1)
    return np.array([np.abs(lap).mean(), scipy.stats.kurtosis(lap), np.abs(med).mean(), hf, slope, np.abs(near).mean() * 4 / 3])


def test_trace_summaries_match_numpy(batch):
    ours = trace_summaries(to_grey(batch)).double().numpy()
    g = grey64(batch)
    for n in range(len(g)):
        np.testing.assert_allclose(ours[n], np_trace_summaries(g[n]), rtol=1e-3, atol=1e-4)


def test_resize_crop_family_matches_reference(batch):
    fam = ResizeCropConsistency(k=4, out_size=64, seed=3)
    out = fam(batch).double().numpy()
    boxes = crop_boxes(128, 128, 4, fam.scale, fam.ratio, 3)
    grey = to_grey(batch)
    per_crop = np.stack(
        [
            np.stack(
                [
                    np_trace_summaries(TF.resized_crop(grey[n], t, l, h, w, [64, 64], antialias=True)[0].double().numpy())
                    for t, l, h, w in boxes
                ]
            )
            for n in range(len(batch))
        ]
    )  # (N, K, M)
    zoom = np.log2(64 / np.sqrt([h * w for _, _, h, w in boxes]))
    for n in range(len(batch)):
        ref = []
        for m in range(len(SUMMARIES)):
            v = per_crop[n, :, m]
            ref += [v.std(), np.ptp(v), np.polyfit(zoom, v, 1)[0]]
        np.testing.assert_allclose(out[n], ref, rtol=2e-3, atol=1e-4)
