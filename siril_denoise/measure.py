"""Measurements on astro images: sky mask, stars, aperture photometry, FWHM, PSNR, display stretch.

The toolkit behind the quality report (:mod:`siril_denoise.report`), the
processing steps that need the sky (:mod:`siril_denoise.protect`, the
pipeline's sky masks) and the benchmark's truth-based scores
(:mod:`siril_denoise.bench.metrics`). The pixel noise itself is
:func:`siril_denoise.noise.estimate_sigma`.

All images are float arrays in the input's data units (ADU for 16-bit data,
[0, 1] for float data). Pass raw CFA frames as their packed same-colour
planes (2×2 Bayer blocks → 4 channels), so that neighbouring pixels share a
colour. Pixel coordinates are numpy's: ``x`` column, ``y`` row, pixel
centres at integers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from siril_denoise.noise import estimate_sigma

__all__ = [
    "background_mask",
    "smooth_background",
    "measured_region",
    "find_stars",
    "aperture_flux",
    "aperture_radii",
    "estimate_fwhm",
    "psnr",
    "display_stretch",
    "stretch_params_from",
]


# --------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------

def _interp_matrix(n_out: int, n_grid: int, block: int) -> np.ndarray:
    """Linear interpolation weights ``(n_out, n_grid)`` from tile centres to pixels (edges held)."""
    pos = np.clip((np.arange(n_out) - (block - 1) / 2.0) / block, 0.0, n_grid - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(n_grid - 2, 0))
    frac = pos - lo
    m = np.zeros((n_out, n_grid), dtype=np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    if n_grid > 1:
        m[np.arange(n_out), lo + 1] += frac
    return m


def _sorted_medians(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the first ``counts[i]`` values of each row once sorted (the rest are +inf).

    Equals ``np.nanmedian`` of rows whose invalid entries are NaN, in one
    vectorised sort instead of a Python loop over rows.
    """
    s = np.sort(rows, axis=1)
    i = np.arange(s.shape[0])
    return (s[i, (counts - 1) // 2] + s[i, counts // 2]) / s.dtype.type(2)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=...)`` with its default cross, by array shifts (faster)."""
    out = mask
    for _ in range(iterations):
        m, out = out, out.copy()
        out[1:] |= m[:-1]
        out[:-1] |= m[1:]
        out[:, 1:] |= m[:, :-1]
        out[:, :-1] |= m[:, 1:]
    return out


def _checkerboard(shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)``, True where ``row + column`` is even."""
    black = np.zeros(shape, dtype=bool)
    black[0::2, 0::2] = True
    black[1::2, 1::2] = True
    return black


def smooth_background(image: np.ndarray, valid: np.ndarray, block: int | None = None) -> np.ndarray:
    """Large-scale background of ``image`` ``(H, W)``, float32 ``(H, W)`` in its units.

    Medians of ``block``×``block`` tiles over the ``valid`` pixels (boolean
    ``(H, W)``; a tile with under a tenth valid takes the median of the
    others), a 3×3 median over tiles, then bilinear interpolation between
    tile centres. ``block`` defaults to an eighth of the shorter side, within
    16..128 px.
    """
    h, w = image.shape
    if block is None:
        block = int(np.clip(min(h, w) // 8, 16, 128))
    nby, nbx = -(-h // block), -(-w // block)
    # Invalid pixels become +inf: after sorting each tile they come last, and
    # the first ``count`` values are the valid ones in order.
    padded = np.full((nby * block, nbx * block), np.inf, dtype=np.float32)
    padded[:h, :w] = np.where(valid & np.isfinite(image), image, np.float32(np.inf))
    tiles = padded.reshape(nby, block, nbx, block).transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
    del padded
    counts = np.isfinite(tiles).sum(axis=2)
    grid = np.full((nby, nbx), np.nan)
    ok = counts >= max(block * block // 10, 1)
    if ok.any():
        grid[ok] = _sorted_medians(tiles[ok], counts[ok])
        fill = np.nanmedian(grid)
    else:
        fill = float(np.median(image[np.isfinite(image)])) if np.isfinite(image).any() else 0.0
    del tiles
    grid = np.where(np.isfinite(grid), grid, fill)
    grid = ndimage.median_filter(grid, size=3, mode="nearest").astype(np.float32)
    return _interp_matrix(h, nby, block) @ grid @ _interp_matrix(w, nbx, block).T


def _gaussian_noise_factor(s: float) -> float:
    """Std of white unit noise after a 2-D Gaussian filter of width ``s`` px."""
    return 1.0 / (2.0 * math.sqrt(math.pi) * s)


def _structure(resid: np.ndarray, use: np.ndarray, den: np.ndarray, threshold: float, grow: int) -> np.ndarray:
    """Where the residual, smoothed over 1.5 px using only the ``use`` pixels, exceeds ``threshold``; grown.

    ``den`` is the same smoothing of ``use`` itself (``gaussian_filter(use, 1.5)``),
    passed in because it does not change between calls.
    """
    num = ndimage.gaussian_filter(np.where(use, resid, np.float32(0)), 1.5)
    found = num > threshold * np.maximum(den, 1e-6)
    return _dilate(found, grow) if grow > 0 else found


def background_mask(image2d: np.ndarray, *, nsigma: float = 3.0, grow: int = 3) -> np.ndarray:
    """Boolean ``(H, W)`` mask of sky pixels.

    Excluded: stars and bright structure (where the image, smoothed over
    1.5 px, rises ``nsigma`` times the noise of that smoothing above the
    large-scale background), grown by ``grow`` px; isolated outliers beyond
    5 σ (hot pixels, cosmic rays); non-finite pixels; pixels at the image's
    maximum (clipped). Works on uint16 and float data of any scale.

    Whether a pixel is sky is decided from the pixels of the *other* colour
    of a checkerboard, never from its own value, so the noise of the kept
    pixels stays zero-mean: a mean over the mask is an unbiased sky level
    (selecting pixels by their own noisy value would bias it by a few
    hundredths of σ, the size of the limit the report checks). If fewer than
    2 % of the pixels would remain, the faintest 30 % (smoothed) are returned.
    """
    x = np.asarray(image2d, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"background_mask expects a 2-D image, got shape {x.shape}")
    finite = np.isfinite(x)
    if not finite.any():
        return finite
    all_finite = bool(finite.all())
    top = np.max(x) if all_finite else np.nanmax(np.where(finite, x, -np.inf))
    base = finite & (x < top)
    sigma = estimate_sigma(x if all_finite else np.where(finite, x, np.nanmedian(x[finite])))
    if not np.isfinite(sigma) or sigma <= 0:
        return base
    black = _checkerboard(x.shape)
    # the smoothing uses half the pixels: its noise is sqrt(2) higher
    threshold = nsigma * sigma * _gaussian_noise_factor(1.5) * math.sqrt(2.0)
    use_black, use_white = base & black, base & ~black
    den_black = ndimage.gaussian_filter(use_black.astype(np.float32), 1.5)
    den_white = ndimage.gaussian_filter(use_white.astype(np.float32), 1.5)
    mask = base
    for _ in range(2):
        bkg = smooth_background(x, mask)
        resid = np.where(finite, x - bkg, np.float32(0))
        del bkg
        from_black = _structure(resid, use_black, den_black, threshold, grow)
        from_white = _structure(resid, use_white, den_white, threshold, grow)
        structure = np.where(black, from_white, from_black)
        del from_black, from_white
        mask = base & ~structure & (np.abs(resid) < 5.0 * sigma)
    if mask.sum() < max(100, 0.02 * x.size):
        smooth = ndimage.gaussian_filter(resid, 1.5)
        mask = base & (smooth <= np.percentile(smooth[base], 30))
    return mask


# --------------------------------------------------------------------------
# Stars
# --------------------------------------------------------------------------

def find_stars(
    image2d: np.ndarray,
    *,
    nsigma: float = 8.0,
    max_stars: int = 500,
    border: int = 10,
    exclude_above: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect point sources; returns ``(x, y)`` float arrays, brightest first.

    A star is a local maximum (7×7) of a difference of Gaussians (1 px minus
    4 px, which keeps point sources and drops the sky and smooth nebulosity)
    that stands ``nsigma`` times the noise of that filter above zero. The
    position is the centroid of the filtered image around the peak. Sources
    within ``border`` px of an edge, and those with a pixel at or above
    ``exclude_above`` within 2 px of the peak (saturated), are dropped.
    """
    x = np.asarray(image2d, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"find_stars expects a 2-D image, got shape {x.shape}")
    finite = np.isfinite(x)
    fill = float(np.median(x[finite])) if finite.any() else 0.0
    x = np.where(finite, x, fill)
    sigma = estimate_sigma(x)
    empty = (np.zeros(0), np.zeros(0))
    if not np.isfinite(sigma) or sigma <= 0:
        return empty
    s1, s2 = 1.0, 4.0
    dog = ndimage.gaussian_filter(x, s1) - ndimage.gaussian_filter(x, s2)
    dog_noise = sigma * math.sqrt(
        1 / (4 * math.pi * s1**2) + 1 / (4 * math.pi * s2**2) - 1 / (math.pi * (s1**2 + s2**2))
    )
    peaks = (dog == ndimage.maximum_filter(dog, size=7)) & (dog > nsigma * dog_noise)
    h, w = x.shape
    b = max(int(border), 2)
    peaks[:b] = peaks[-b:] = False
    peaks[:, :b] = peaks[:, -b:] = False
    py, px = np.nonzero(peaks)
    if exclude_above is not None and py.size:
        local_max = ndimage.maximum_filter(x, size=5)[py, px]
        keep = local_max < exclude_above
        py, px = py[keep], px[keep]
    order = np.argsort(dog[py, px])[::-1][:max_stars]
    py, px = py[order], px[order]
    # centroid of the positive filtered image in a 5×5 window
    offs = np.arange(-2, 3)
    wy = py[:, None, None] + offs[None, :, None]
    wx = px[:, None, None] + offs[None, None, :]
    win = np.clip(dog[wy, wx], 0.0, None)
    tot = win.sum(axis=(1, 2))
    cy = py + (win * offs[None, :, None]).sum(axis=(1, 2)) / tot
    cx = px + (win * offs[None, None, :]).sum(axis=(1, 2)) / tot
    return cx.astype(np.float64), cy.astype(np.float64)


def aperture_flux(
    image2d: np.ndarray, x: np.ndarray, y: np.ndarray, r_ap: float, r_in: float, r_out: float
) -> np.ndarray:
    """Background-subtracted aperture fluxes, in data units × pixels.

    For each ``(x, y)``: the sum of the pixels whose centres lie within
    ``r_ap`` px, minus their count times the local background, the mean of
    the annulus ``r_in <= r <= r_out``. The estimate is linear in the image,
    so the flux change a denoiser causes is exactly the photometry of what it
    removed, whatever the noise level (a clipped or median background would
    treat a noisy input and a clean output differently). NaN where the
    annulus leaves the image or any pixel in it is non-finite. Returns
    float64 ``(N,)``.
    """
    img = np.asarray(image2d)
    xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
    ys = np.atleast_1d(np.asarray(y, dtype=np.float64))
    h, w = img.shape
    r = int(math.ceil(r_out))
    offs = np.arange(-r, r + 1)
    out = np.full(xs.shape, np.nan)
    for i, (xc, yc) in enumerate(zip(xs, ys)):
        ix, iy = int(round(xc)), int(round(yc))
        if ix - r < 0 or iy - r < 0 or ix + r >= w or iy + r >= h:
            continue
        cut = img[iy - r: iy + r + 1, ix - r: ix + r + 1].astype(np.float64)
        d2 = (offs[:, None] + iy - yc) ** 2 + (offs[None, :] + ix - xc) ** 2
        ap = d2 <= r_ap**2
        ann = (d2 >= r_in**2) & (d2 <= r_out**2)
        if not np.isfinite(cut[ap | ann]).all():
            continue
        out[i] = cut[ap].sum() - ap.sum() * cut[ann].mean()
    return out


def aperture_radii(fwhm: float) -> tuple[float, float, float]:
    """Aperture radius and background annulus ``(r_ap, r_in, r_out)`` in px for stars of this FWHM (px).

    ``r_ap = max(2, 2·FWHM)``; the annulus starts 2 px further out and is
    ``max(4, 2·FWHM)`` px wide. The quality report and the benchmark measure
    with these radii, so their flux ratios compare.
    """
    r_ap = max(2.0, 2.0 * fwhm)
    r_in = r_ap + 2.0
    return r_ap, r_in, r_in + max(4.0, 2.0 * fwhm)


def estimate_fwhm(image: np.ndarray, x: np.ndarray, y: np.ndarray, n: int = 20) -> float:
    """Median FWHM (px) of up to ``n`` stars at ``(x, y)``, from the area above half their peak.

    3.0 px when none of them can be measured (within 8 px of an edge, or no peak above the local sky).
    """
    h, w = image.shape
    r = 8
    widths = []
    for xc, yc in zip(x[:n], y[:n]):
        ix, iy = int(round(xc)), int(round(yc))
        if ix - r < 0 or iy - r < 0 or ix + r >= w or iy + r >= h:
            continue
        cut = image[iy - r: iy + r + 1, ix - r: ix + r + 1]
        edge = np.concatenate([cut[0], cut[-1], cut[:, 0], cut[:, -1]])
        c = cut - np.median(edge)
        peak = c[r - 1: r + 2, r - 1: r + 2].max()
        if peak <= 0:
            continue
        lab, _ = ndimage.label(c >= peak / 2)
        area = (lab == lab[r, r]).sum() if lab[r, r] else (c >= peak / 2).sum()
        widths.append(2.0 * math.sqrt(area / math.pi))
    return float(np.median(widths)) if widths else 3.0


# --------------------------------------------------------------------------
# Scores against a known truth (benchmark)
# --------------------------------------------------------------------------

def psnr(x: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / mean((x - truth)²))``."""
    err = np.mean((np.asarray(x, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2)
    return float("inf") if err == 0 else float(10.0 * np.log10(data_range**2 / err))


def stretch_params_from(truth: np.ndarray) -> dict[str, float]:
    """Black point, white point and softening of a display stretch, from the noise-free truth.

    black: 0.1st percentile of the truth (just under the faintest sky);
    white: its maximum; soft: 1/1000 of the range, where the stretch turns
    from linear (faint sky and its noise) to logarithmic (stars). Derive them
    once per scene and stretch every method's output with the same values.
    """
    t = np.asarray(truth, dtype=np.float64)
    black = float(np.percentile(t, 0.1))
    white = float(t.max())
    if white <= black:
        white = black + 1.0
    return {"black": black, "white": white, "soft": (white - black) / 1000.0}


def display_stretch(x: np.ndarray, *, black: float, white: float, soft: float | None = None) -> np.ndarray:
    """Asinh display stretch: ``asinh((x - black) / soft) / asinh((white - black) / soft)``.

    Maps ``black`` to 0 and ``white`` to 1; not clipped, so noise below the
    black point still counts in a PSNR on the stretched image. ``soft``
    defaults to ``(white - black) / 1000``. Returns float64.
    """
    if soft is None:
        soft = (white - black) / 1000.0
    x = np.asarray(x, dtype=np.float64)
    return np.arcsinh((x - black) / soft) / np.arcsinh((white - black) / soft)


def measured_region(shape: tuple[int, int], max_pixels: int = 8_000_000) -> tuple[slice, slice]:
    """Rows and columns :func:`quality_report` measures on an image of ``shape`` ``(H, W)``.

    The whole image up to ``max_pixels`` pixels; above, the centred crop of
    the same aspect ratio holding about ``max_pixels`` pixels.
    """
    h, w = shape
    if h * w <= max_pixels:
        return slice(0, h), slice(0, w)
    scale = math.sqrt(max_pixels / (h * w))
    ch_, cw_ = max(int(h * scale), 1), max(int(w * scale), 1)
    y0, x0 = (h - ch_) // 2, (w - cw_) // 2
    return slice(y0, y0 + ch_), slice(x0, x0 + cw_)
