"""Classical baselines, run on the same working arrays as the learned methods.

Each baseline maps a working image, float32 ``(C, H, W)`` in data units
(packed same-colour planes for raw Bayer data), to a denoised image of the
same shape, one channel at a time (Siril's ``denoise``: the whole image in
``siril-cli``). The noise level is estimated the same way
for all of them: :func:`siril_denoise.noise.estimate_sigma` per channel, or
the Poisson–Gaussian model of :func:`siril_denoise.noise.estimate_noise_model`
where a method needs the signal-dependent part.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from siril_denoise.noise import Normaliser, estimate_noise_model, estimate_sigma

from .siril_baseline import SIRIL_BASELINES, siril_available

Baseline = Callable[[np.ndarray, bool], np.ndarray]


def _sigmas(work: np.ndarray) -> list[float]:
    return [float(estimate_sigma(ch)) for ch in work]


def in_stabilised_domain(work: np.ndarray, packed: bool, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run a unit-noise denoiser ``fn`` (2-D float64 → 2-D) per channel in the GAT domain.

    The noise model is fitted to the image, :class:`~siril_denoise.noise.Normaliser`
    applies the generalised Anscombe transform (noise σ ≈ 1 everywhere),
    ``fn`` denoises each channel, and the exact unbiased inverse brings the
    result back to data units. Without signal-dependent noise (``a <= 0``)
    the linear normalisation (σ = 1 as well) is used instead.
    """
    model = estimate_noise_model(work, shared_channels=packed)
    transform = "gat" if np.all(model.a > 0) else "linear"
    norm = Normaliser.fit(work, model, transform)
    z = norm.forward(work)
    out = np.stack([np.asarray(fn(ch.astype(np.float64)), dtype=np.float32) for ch in z])
    return norm.inverse(out, unbiased=True)


def bm3d_gat(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """BM3D (``bm3d`` package, ``sigma_psd=1``) in the GAT domain (:func:`in_stabilised_domain`)."""
    import bm3d

    return in_stabilised_domain(work, packed, lambda z: bm3d.bm3d(z, sigma_psd=1.0))


def nl_means(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """scikit-image non-local means (fast mode, 5×5 patches, 13×13 search, ``h = 0.8 σ``) per channel."""
    from skimage.restoration import denoise_nl_means

    out = [denoise_nl_means(ch.astype(np.float64), patch_size=5, patch_distance=6, h=0.8 * s, sigma=s,
                            fast_mode=True) for ch, s in zip(work, _sigmas(work))]
    return np.stack(out).astype(np.float32)


def wavelet(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """scikit-image wavelet BayesShrink (soft thresholds, ``sym4``) in the GAT domain (σ = 1).

    On linear data BayesShrink does next to nothing: the bright stars inflate
    every subband's variance, so its thresholds collapse. Variance
    stabilisation (as for BM3D) makes it a fair baseline.
    """
    from skimage.restoration import denoise_wavelet

    return in_stabilised_domain(work, packed, lambda z: denoise_wavelet(
        z, sigma=1.0, wavelet="sym4", mode="soft", method="BayesShrink", rescale_sigma=True))


def gaussian(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """Gaussian blur of σ = 1 px per channel (the simplest possible smoothing)."""
    return np.stack([ndimage.gaussian_filter(ch, 1.0, mode="reflect") for ch in work]).astype(np.float32)


#: Every baseline by bench method name. The Siril ones (:mod:`siril_denoise.bench.siril_baseline`) raise
#: :class:`NotApplicable` where ``siril-cli`` is absent and on packed raw-Bayer planes: the bench's ``n/a`` rows.
BASELINES: dict[str, Baseline] = {"bm3d": bm3d_gat, "nlm": nl_means, "wavelet": wavelet, "gaussian": gaussian,
                                  **SIRIL_BASELINES}


def default_baselines() -> tuple[str, ...]:
    """The baselines a plain bench run scores: all of them, the Siril ones only where Siril is installed."""
    return tuple(m for m in BASELINES if m not in SIRIL_BASELINES or siril_available())


def mean_of_frames(works: list[np.ndarray], homographies: np.ndarray) -> np.ndarray:
    """Average of the session's frames aligned onto frame 0 (the physical reference of stacking).

    ``works``: working arrays ``(C, H, W)``; ``homographies``: ``(N, 3, 3)``
    maps from each frame's working pixels to frame 0's (for packed CFA
    planes, already converted with
    :func:`siril_denoise.pairs.full_to_packed_homography`). Frames are
    resampled with :func:`siril_denoise.pairs.warp_crop` (an exact copy for
    integer shifts); each output pixel averages the frames that cover it.
    No photometric matching: per-frame sky and transparency changes stay in.
    """
    from siril_denoise.pairs import warp_crop

    c, h, w = works[0].shape
    size = max(h, w)
    total = np.zeros((c, size, size), dtype=np.float64)
    count = np.zeros((size, size), dtype=np.float64)
    for frame, hom in zip(works, homographies):
        to_frame = np.linalg.inv(np.asarray(hom, dtype=np.float64))  # frame-0 pixel -> this frame's
        vals, ok = warp_crop(frame, to_frame, 0, 0, size)
        total += np.where(ok[None], vals, 0.0)
        count += ok
    out = total / np.maximum(count, 1)[None]
    out = np.where(count[None] > 0, out, np.pad(works[0], ((0, 0), (0, size - h), (0, size - w)), mode="edge"))
    return out[:, :h, :w].astype(np.float32)
