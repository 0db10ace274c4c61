"""Noise estimation, the Poisson–Gaussian noise model and variance stabilisation.

Camera noise in a linear sub is Poisson–Gaussian: the variance of a pixel
grows linearly with its expected value,

    var(x) = a · x + c        (x in data units: ADU, or Siril's [0, 1])

where ``a`` is the data units per photo-electron and ``c = σ_read² − a·P``
folds the read noise and the pedestal P together. Only ``(a, c)`` are needed:
with ``y = (x + c/a) / a`` the variance of ``y`` equals its mean, so ``y``
behaves like a Poisson count (the "shifted Poisson" approximation of the
Gaussian read noise) and the Anscombe transform ``2·sqrt(y + 3/8)`` makes the
noise unit-variance everywhere. The inverse is the *exact unbiased* inverse
of Mäkitalo & Foi (IEEE TIP 2011/2013): the value λ whose expected transform
E[2·sqrt(Y + 3/8)], Y ~ Poisson(λ), equals the denoised value. It is computed
here numerically once, tabulated, and extended linearly below λ = 0 so that
nothing is clipped.

Without variance stabilisation a network trained on photon-limited subs
spends its loss on the bright stars and learns little about the background
(design.md, "what a quick independent experiment showed").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage, special

__all__ = [
    "estimate_sigma", "mad_sigma", "NoiseModel", "estimate_noise_model", "anscombe", "inverse_anscombe",
    "algebraic_inverse_anscombe", "Normaliser",
]

_MAD_TO_SIGMA = 1.482602218505602


#: Rows per band (even) in the banded full-frame passes: the float64 work
#: space is a band, not the frame (a 24-megapixel float64 copy is 192 MB).
BAND_ROWS = 256


def row_bands(height: int, rows: int | None = None) -> list[slice]:
    """Slices ``[y0, y1)`` of ``rows`` rows (default :data:`BAND_ROWS`; the last one shorter) covering ``height``."""
    rows = rows or BAND_ROWS
    return [slice(y0, min(y0 + rows, height)) for y0 in range(0, height, rows)]


def _blocks(image: np.ndarray, combine) -> np.ndarray:
    """``combine(p, q, r, s)`` over the 2×2 blocks of ``image`` (float64 p q / r s), shape (H//2, W//2).

    Computed in bands of rows, so no float64 copy of the whole image is made.
    """
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    out = np.empty((h // 2, w // 2), dtype=np.float64)
    for band in row_bands(h):
        x = image[band, :w].astype(np.float64, copy=False)
        out[band.start // 2: band.stop // 2] = combine(x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2])
    return out


def _haar_detail(image: np.ndarray) -> np.ndarray:
    """Diagonal Haar detail of non-overlapping 2×2 blocks, shape (H//2, W//2).

    For white noise of std σ the detail has std σ; linear gradients cancel.
    """
    return _blocks(image, lambda p, q, r, s: (p - q - r + s) / 2.0)


def _block_mean(image: np.ndarray) -> np.ndarray:
    return _blocks(image, lambda p, q, r, s: (p + q + r + s) / 4.0)


def _block_mask(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
    m = mask[:h, :w]
    return m[0::2, 0::2] & m[0::2, 1::2] & m[1::2, 0::2] & m[1::2, 1::2]


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation: ``1.4826 · median(|v − median(v)|)``, the median absolute deviation scaled.

    Equals the standard deviation for Gaussian values and ignores up to half
    of them being outliers (stars, hot pixels, cosmic rays, mismatched stars).
    ``values``: any shape (flattened), any real dtype. Returns a float in the
    values' units; NaN when there are none.
    """
    v = np.asarray(values).ravel()
    if v.size == 0:
        return float("nan")
    return float(_MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def estimate_sigma(
    image: np.ndarray, mask: np.ndarray | None = None, *, channel_axis: int | None = None
) -> float | np.ndarray:
    """Estimate the standard deviation of the pixel noise of an image.

    A robust (:func:`mad_sigma`) estimate on the diagonal Haar detail of 2×2
    blocks, so smooth structure and gradients do not count as noise and
    stars barely do. For Poisson–Gaussian data this is the noise at the
    typical (mostly background) level.

    Args:
        image: ``(H, W)``, or with ``channel_axis`` one more axis of
            channels (e.g. ``(C, H, W)`` with ``channel_axis=0``); any real
            dtype, any units.
        mask: optional boolean, ``(H, W)`` (shared by all channels) or the
            image's shape; only blocks entirely inside it count.
        channel_axis: None: the image is one 2-D plane and one value is
            returned; an int: the axis that holds the channels, and one value
            per channel is returned (as scikit-image's ``estimate_sigma``).

    Returns:
        Gaussian-equivalent noise standard deviation in the image's units: a
        float, or float64 ``(C,)`` with ``channel_axis``. NaN where fewer than
        16 blocks are usable.
    """
    image = np.asarray(image)
    if channel_axis is not None:
        planes = np.moveaxis(image, channel_axis, 0)
        masks = [None] * len(planes)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            masks = np.moveaxis(mask, channel_axis, 0) if mask.ndim == image.ndim else [mask] * len(planes)
        return np.array([estimate_sigma(p, m) for p, m in zip(planes, masks)], dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(
            f"estimate_sigma expects a 2-D image (or channel_axis for a stack of planes), got shape {image.shape}"
        )
    d = _haar_detail(image)
    if mask is not None:
        d = d[_block_mask(np.asarray(mask, dtype=bool))]
    if d.size < 16:
        return float("nan")
    return mad_sigma(d)


@dataclass
class NoiseModel:
    """Per-channel Poisson–Gaussian model ``var(x) = a·x + c`` in data units.

    Attributes:
        a: shape (C,), data units per photo-electron (0 for pure Gaussian noise).
        c: shape (C,), variance at x = 0, in data units² (may be negative
            when there is a pedestal).
        sigma: shape (C,), the background noise std (from :func:`estimate_sigma`).
        signal_dependent: True when the variance changes enough over the
            image's range to call for variance stabilisation.
    """

    a: np.ndarray
    c: np.ndarray
    sigma: np.ndarray
    signal_dependent: bool

    def variance(self, x: np.ndarray) -> np.ndarray:
        """Expected noise variance of working data ``x`` of shape (C, H, W)."""
        return self.a[:, None, None] * x + self.c[:, None, None]

    def to_dict(self) -> dict:
        return {
            "a": [float(v) for v in self.a],
            "c": [float(v) for v in self.c],
            "sigma": [float(v) for v in self.sigma],
            "signal_dependent": bool(self.signal_dependent),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseModel":
        return cls(
            a=np.asarray(d["a"], dtype=np.float64),
            c=np.asarray(d["c"], dtype=np.float64),
            sigma=np.asarray(d["sigma"], dtype=np.float64),
            signal_dependent=bool(d["signal_dependent"]),
        )


def _fit_line(means: np.ndarray, details: np.ndarray, n_bins: int = 24) -> tuple[float, float, float]:
    """Fit var = a·m + c to block means and Haar details; returns (a, c, relative change)."""
    # Ranked on levels rounded to 1e-6 of their span, ties kept in place (a stable sort): the bins then hold
    # the same blocks whatever the data units (uint16 ADU, or the same frame as float32 / 65535, whose
    # rounding would otherwise break the many ties of integer data differently and move the fit).
    span = float(np.ptp(means)) if means.size else 0.0
    keys = np.round((means - means.min()) / span * 1e6) if span > 0 else np.zeros_like(means)
    order = np.argsort(keys, kind="stable")
    means, details = means[order], details[order]
    n = means.size
    # Drop the brightest 1 %: saturated cores and star centres where the
    # block mean is not the pixel expectation.
    keep = int(n * 0.99)
    means, details = means[:keep], details[:keep]
    edges = np.linspace(0, keep, n_bins + 1).astype(int)
    xs, vs, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo < 50:
            continue
        s = mad_sigma(details[lo:hi])
        xs.append(float(np.median(means[lo:hi])))
        vs.append(s * s)
        ws.append((hi - lo) / max(s, 1e-30) ** 4)
    xs, vs, ws = np.array(xs), np.array(vs), np.array(ws)
    if xs.size < 3 or np.ptp(xs) <= 0:
        v = float(np.median(vs)) if vs.size else 0.0
        return 0.0, v, 0.0
    # Weighted least squares, var(var_hat) ∝ var²/n.
    A = np.stack([xs, np.ones_like(xs)], axis=1) * np.sqrt(ws)[:, None]
    a, c = np.linalg.lstsq(A, vs * np.sqrt(ws), rcond=None)[0]
    if a <= 0:
        v = float(np.average(vs, weights=ws))
        return 0.0, v, 0.0
    # How much the variance changes between the background and the bright
    # end of the fitted range, relative to the background variance.
    v_lo = a * xs[0] + c
    v_hi = a * np.percentile(means, 99.5) + c
    rel = float((v_hi - v_lo) / max(v_lo, 1e-30))
    return float(a), float(c), rel


def _haar_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical Haar details of 2×2 blocks (std σ each for white noise)."""
    return (_blocks(image, lambda p, q, r, s: (p + q - r - s) / 2.0),
            _blocks(image, lambda p, q, r, s: (p - q + r - s) / 2.0))


def _block_stats(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per 2×2 block in smooth areas: local level (6×6-pixel mean) and diagonal detail.

    Blocks whose horizontal/vertical details exceed what the *local* noise
    (median of the diagonal details around them) explains are structure
    (star flanks, edges) and are dropped: chi-square, 2 degrees of freedom,
    99 % of pure-noise blocks pass.
    """
    d = _haar_detail(image)
    gh, gv = _haar_gradients(image)
    local_var = ndimage.median_filter(d * d, size=5, mode="reflect") / 0.4549  # median of chi2(1)
    keep = gh * gh + gv * gv < 9.21 * np.maximum(local_var, 1e-30)
    if mask is not None:
        keep &= _block_mask(np.asarray(mask, dtype=bool))
    m = ndimage.uniform_filter(_block_mean(image), size=3, mode="reflect")
    return m[keep], d[keep]


#: Frames larger than this many pixels (per channel) are measured on evenly
#: spread bands of rows holding about this many: ~10⁶ 2×2 blocks, which fix
#: the noise variance to ~0.3 %, while the model is fitted in a fraction of
#: the time a 24-megapixel frame takes.
NOISE_MODEL_PIXELS = 4_000_000
_SAMPLE_ROWS = 128


def sample_rows(height: int, width: int, max_pixels: int = NOISE_MODEL_PIXELS) -> np.ndarray | None:
    """Row indices of evenly spread bands of 128 rows (starting on even rows) holding about ``max_pixels``.

    None when the whole ``height``×``width`` image is at most ``max_pixels``.
    2×2 blocks never straddle two bands.
    """
    if height * width <= max_pixels or height <= 2 * _SAMPLE_ROWS:
        return None
    n = max(1, min(max_pixels // (_SAMPLE_ROWS * width), height // _SAMPLE_ROWS))
    starts = np.linspace(0, height - _SAMPLE_ROWS, n).astype(int) // 2 * 2
    return (starts[:, None] + np.arange(_SAMPLE_ROWS)[None, :]).ravel()


def _subsample(frames: list, mask: np.ndarray | None) -> tuple[list, np.ndarray | None]:
    rows = sample_rows(*frames[0].shape[-2:])
    if rows is None:
        return frames, mask
    return [f[:, rows] for f in frames], (None if mask is None else np.asarray(mask)[rows])


def estimate_noise_model(
    work: np.ndarray,
    *,
    shared_channels: bool = False,
    gain_e_per_unit: float | None = None,
    mask: np.ndarray | None = None,
) -> NoiseModel:
    """Estimate the Poisson–Gaussian model of working data from the data itself.

    Blocks of 2×2 pixels in smooth areas give a local level and a noise
    sample (the diagonal Haar detail, blind to gradients); binned robust
    variances are fitted with ``var = a·level + c`` by weighted least squares.

    Args:
        work: float ``(C, H, W)`` in data units (or a list of such arrays,
            e.g. the frames of a session, pooled).
        shared_channels: fit one model for all channels (packed CFA planes
            come from the same sensor); otherwise one per channel (RGB
            channels may have been scaled differently).
        gain_e_per_unit: electrons per data unit from a header (EGAIN,
            Siril's ``cvf``), when known: fixes ``a = 1/gain`` and fits ``c``.
        mask: optional boolean ``(H, W)`` of valid pixels.

    Frames of more than :data:`NOISE_MODEL_PIXELS` pixels are measured on
    evenly spread bands of rows (:func:`sample_rows`).

    Returns:
        A :class:`NoiseModel`. The model is marked signal dependent when the
        variance at the bright end of the image (99.9th percentile level) is
        at least 50 % above the background's. ``a`` itself is loosely
        determined when the image has little smooth area away from the sky
        level; the background variance ``a·x_sky + c`` is accurate, and that
        is what the variance stabilisation depends on most.
    """
    frames = list(work) if isinstance(work, (list, tuple)) else [work]
    frames, mask = _subsample(frames, mask)
    C = frames[0].shape[0]
    groups = [list(range(C))] if shared_channels else [[k] for k in range(C)]
    a = np.zeros(C)
    c = np.zeros(C)
    sig = np.zeros(C)
    rels = []
    for chans in groups:
        stats = [_block_stats(f[k], mask) for f in frames for k in chans]
        for k in chans:
            sig[k] = float(np.median([estimate_sigma(f[k], mask) for f in frames]))
        m = np.concatenate([s[0] for s in stats])
        d = np.concatenate([s[1] for s in stats])
        if gain_e_per_unit:
            ak = 1.0 / float(gain_e_per_unit)
            ck = mad_sigma(d) ** 2 - ak * float(np.median(m))
        else:
            ak, ck, _ = _fit_line(m, d)
        # How much the variance changes over the image's whole range (stars
        # included), relative to the background's.
        everything = np.concatenate([_block_mean(f[k]).ravel() for f in frames for k in chans])
        lo, hi = np.percentile(everything, [1, 99.9])
        rel = ak * (hi - lo) / max(ak * lo + ck, 1e-30)
        for k in chans:
            a[k], c[k] = ak, ck
        rels.append(rel)
    return NoiseModel(a=a, c=c, sigma=sig, signal_dependent=bool(min(rels) >= 0.5))


# ---------------------------------------------------------------------------
# Anscombe transform and its exact unbiased inverse (Poisson)

_S0 = float(np.sqrt(0.375))  # sqrt(3/8)
_D0 = 2.0 * _S0  # anscombe(0)


def anscombe(y: np.ndarray) -> np.ndarray:
    """Anscombe transform ``2·sqrt(y + 3/8)`` for y ≥ 0, continued linearly below.

    Read noise puts some pixels below zero counts; instead of clipping them
    (the square root's domain ends at −3/8) the transform continues with its
    tangent at y = 0, ``2·sqrt(3/8) + y / sqrt(3/8)``, so it stays smooth,
    monotone and invertible for every pixel.
    """
    y = np.asarray(y, dtype=np.float64)
    return np.where(y >= 0, 2.0 * np.sqrt(np.maximum(y, 0.0) + 0.375), _D0 + y / _S0)


def algebraic_inverse_anscombe(d: np.ndarray) -> np.ndarray:
    """Exact algebraic inverse of :func:`anscombe` (both branches)."""
    d = np.asarray(d, dtype=np.float64)
    return np.where(d >= _D0, d * d / 4.0 - 0.375, (d - _D0) * _S0)


@lru_cache(maxsize=1)
def _unbiased_table() -> tuple[np.ndarray, np.ndarray]:
    """Tabulate E[anscombe(Y)] for Y ~ Poisson(λ), λ on a grid in [0, 400]."""
    lam = np.concatenate([np.linspace(0.0, 2.0, 201)[:-1], np.linspace(2.0, 400.0, 1600)])
    k = np.arange(0, 1200)[:, None]
    logpmf = k * np.log(np.maximum(lam[None], 1e-300)) - lam[None] - special.gammaln(k + 1)
    pmf = np.exp(logpmf)
    pmf[:, 0] = 0.0
    pmf[0, 0] = 1.0
    ef = (pmf * anscombe(k.astype(np.float64))).sum(axis=0)
    return ef, lam


def inverse_anscombe(d: np.ndarray) -> np.ndarray:
    """Exact unbiased inverse of :func:`anscombe` for Poisson data.

    Returns λ such that E[anscombe(Poisson(λ))] = d (Poisson counts are never
    negative, so only the square-root branch enters). Above the table the
    closed-form asymptotic expansion of Mäkitalo & Foi is used (error < 1e-6);
    below E at λ = 0 (d < 2·sqrt(3/8)) the inverse continues linearly to
    negative λ instead of clipping.
    """
    ef, lam = _unbiased_table()
    d = np.asarray(d, dtype=np.float64)
    out = np.interp(d, ef, lam)
    hi = d > ef[-1]
    if np.any(hi):
        dh = d[hi]
        r = np.sqrt(1.5)
        out[hi] = 0.25 * dh**2 + 0.25 * r / dh - 1.375 / dh**2 + 0.625 * r / dh**3 - 0.125
    lo = d < ef[0]
    if np.any(lo):
        slope = (lam[1] - lam[0]) / (ef[1] - ef[0])
        out[lo] = (d[lo] - ef[0]) * slope
    return out


@dataclass
class Normaliser:
    """Maps working data (data units) to the network domain and back.

    ``transform='gat'``: generalised Anscombe with the noise model, then the
    per-channel background level subtracted, so the noise is ≈ N(0, 1)
    everywhere and the sky sits near 0. ``transform='linear'``: subtract the
    per-channel background median and divide by the noise σ. Both are
    recorded in every model (``to_dict``) so inference sees the same domain
    as training.
    """

    transform: str
    a: np.ndarray
    c: np.ndarray
    offset: np.ndarray
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))

    @classmethod
    def fit(cls, work: np.ndarray | list, model: NoiseModel, transform: str = "auto") -> "Normaliser":
        """Choose the transform ('auto': GAT when the noise is signal dependent)."""
        if transform == "auto":
            transform = "gat" if model.signal_dependent and np.all(model.a > 0) else "linear"
        if transform not in ("gat", "linear"):
            raise ValueError(f"unknown transform {transform!r}")
        first = work[0] if isinstance(work, (list, tuple)) else work
        C = first.shape[0]
        rows = sample_rows(*first.shape[1:])  # the sky level of large frames from spread bands of rows
        if rows is not None:
            first = first[:, rows]
        if transform == "gat":
            if not np.all(model.a > 0):
                raise ValueError("the GAT needs a > 0 in every channel")
            n = cls("gat", model.a.copy(), model.c.copy(), np.zeros(C), np.ones(C))
            z = np.empty(first.shape, dtype=np.float64)
            for band in row_bands(first.shape[1]):
                z[:, band] = n._gat(first[:, band])
            n.offset = np.median(z.reshape(C, -1), axis=1, overwrite_input=True)
        else:
            sigma = np.where(model.sigma > 0, model.sigma, 1.0)
            n = cls("linear", model.a.copy(), model.c.copy(), np.median(first.reshape(C, -1), axis=1), sigma)
        return n

    def _gat(self, x: np.ndarray) -> np.ndarray:
        a = self.a[:, None, None]
        y = (x + self.c[:, None, None] / a) / a
        return anscombe(y)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Data units ``(C, H, W)`` → network domain (float32, noise σ ≈ 1).

        Computed in float64 over bands of rows (the result is the same as
        over the whole frame; the work space is a band).
        """
        x = np.asarray(x)
        out = np.empty(x.shape, dtype=np.float32)
        for band in row_bands(x.shape[1]):
            xb = np.asarray(x[:, band], dtype=np.float64)
            if self.transform == "gat":
                out[:, band] = self._gat(xb) - self.offset[:, None, None]
            else:
                out[:, band] = (xb - self.offset[:, None, None]) / self.scale[:, None, None]
        return out

    def inverse(self, z: np.ndarray, unbiased: bool = True) -> np.ndarray:
        """Network domain → data units (float32).

        For the GAT, ``unbiased=True`` applies the exact unbiased inverse
        (right for a network trained on transformed targets, which learns
        E[GAT(y)]); ``unbiased=False`` the algebraic inverse (right for a
        network trained against linear targets, see :mod:`.methods.n2n`).
        Computed in float64 over bands of rows, like :meth:`forward`.
        """
        z = np.asarray(z)
        out = np.empty(z.shape, dtype=np.float32)
        for band in row_bands(z.shape[1]):
            zb = np.asarray(z[:, band], dtype=np.float64)
            if self.transform == "gat":
                a = self.a[:, None, None]
                d = zb + self.offset[:, None, None]
                y = inverse_anscombe(d) if unbiased else algebraic_inverse_anscombe(d)
                out[:, band] = a * y - self.c[:, None, None] / a
            else:
                out[:, band] = zb * self.scale[:, None, None] + self.offset[:, None, None]
        return out

    def to_dict(self) -> dict:
        return {
            "transform": self.transform,
            "a": [float(v) for v in self.a],
            "c": [float(v) for v in self.c],
            "offset": [float(v) for v in self.offset],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Normaliser":
        return cls(
            d["transform"],
            np.asarray(d["a"], dtype=np.float64),
            np.asarray(d["c"], dtype=np.float64),
            np.asarray(d["offset"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
        )
