"""Give back what the denoiser removed that is not noise.

The part a denoiser removes, ``r = x − x̂``, should be noise: zero mean and
no structure. Around stars it often is not: smoothing in the
variance-stabilised (square-root-like) domain lowers the peaks, and a
network trained briefly on one image blurs them; both take flux away. This
step tests the removed part for significance and puts back its significant,
smooth component:

    rn = r / sqrt(var(x̂))                  (unit variance where r is noise)
    L  = G_s * rn                           (Gaussian low-pass, std σ_L = 1/(2·sqrt(π)·s) for white rn)
    w  = smoothstep(|L| / σ_L; t0, t1)      (0 where L is compatible with noise)
    x̂' = x̂ + w · (G_s * r)

Where the removed part is pure noise, w ≈ 0 and nothing changes; where
signal was removed (star cores, sharp edges), its local mean comes back, so
aperture fluxes are kept. The cost is a little low-frequency noise kept
right at those places, where the signal's own photon noise dominates anyway.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .noise import NoiseModel

__all__ = ["restore_structure"]


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def restore_structure(
    x: np.ndarray,
    denoised: np.ndarray,
    noise: NoiseModel,
    *,
    scale: float = 1.5,
    thresholds: tuple[float, float] = (2.0, 3.5),
) -> tuple[np.ndarray, float]:
    """Put back the significant, smooth part of what was removed.

    Args:
        x: the input, float32 ``(C, H, W)`` in data units.
        denoised: the denoiser's output, same shape and units.
        noise: the input's noise model (variance ``a·x + c`` per channel).
        scale: Gaussian low-pass std in pixels.
        thresholds: significance (in σ of the low-passed normalised
            residual) where restoring starts and where it is complete.

    Returns:
        ``(restored, fraction)``: the corrected image (float32, same shape)
        and the fraction of pixels where anything was given back.
    """
    out = denoised.astype(np.float32, copy=True)
    sigma_l = 1.0 / (2.0 * np.sqrt(np.pi) * scale)
    touched = 0
    for k in range(x.shape[0]):
        r = x[k].astype(np.float64) - denoised[k]
        var = noise.a[k] * denoised[k] + noise.c[k]
        floor = max(float(noise.sigma[k]) ** 2, 1e-30) * 0.25
        rn = r / np.sqrt(np.maximum(var, floor))
        low = ndimage.gaussian_filter(rn, scale, mode="reflect")
        w = _smoothstep(np.abs(low) / sigma_l, *thresholds)
        if np.any(w > 0):
            out[k] += (w * ndimage.gaussian_filter(r, scale, mode="reflect")).astype(np.float32)
            touched += int(np.count_nonzero(w > 0))
    return out, touched / x.size


def restore_background_level(x: np.ndarray, denoised: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Give back any constant sky-level change, per channel.

    Over the sky the removed part must average to zero; a briefly trained
    network can shift it by a few hundredths of the noise. The mean of the
    removed part over the sky (pixels chosen by
    :func:`siril_denoise.report.background_mask`, which does not select
    pixels by their own noisy value) is added back. Its own error is
    σ/sqrt(number of sky pixels), negligible.

    Returns:
        ``(corrected, offsets)``: float32 image and the offset added to each
        channel, in data units.
    """
    from .report import background_mask

    out = denoised.astype(np.float32, copy=True)
    offsets = []
    for k in range(x.shape[0]):
        mask = background_mask(x[k])
        if mask.sum() < 100:
            offsets.append(0.0)
            continue
        r = (x[k].astype(np.float64) - denoised[k])[mask]
        s = 1.4826 * np.median(np.abs(r - np.median(r)))
        r = r[np.abs(r - np.median(r)) <= 6 * max(s, 1e-30)]
        off = float(r.mean()) if r.size else 0.0
        out[k] += np.float32(off)
        offsets.append(off)
    return out, offsets
