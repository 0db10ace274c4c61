"""Where session frames become Noise2Noise training pairs.

Two frames of the same sky carry the same signal and independent noise, so
one can serve as the training target of the other (Noise2Noise). This module
turns the frames of a session into such pairs:

1. **Geometry.** Each frame ``k`` has a 3×3 homography ``H[k]`` mapping its
   pixel coordinates ``(x, y, 1)`` (``x`` = column, ``y`` = row, 0-based,
   integer values at pixel centres) onto the reference frame's coordinates,
   as Siril stores them in ``regparam[layer][k].H``. Identity means the frame
   is already resampled onto the reference. :func:`register` finds the
   homographies of unregistered frames (astroalign on stars, phase
   correlation when there are too few stars).
2. **Validity.** Exact zeros connected to the image border are the empty
   borders of resampled frames (:func:`zero_border_mask`); they, and the
   pixels a few pixels from them, are never used.
3. **Pairs.** :class:`PairSampler` draws crops of frame ``i`` in its own
   geometry (never resampled) and warps frame ``j`` onto that crop on the fly,
   then normalises ``j`` photometrically to ``i`` (sky level and transparency
   change by a few per cent between frames).

Raw Bayer frames arrive packed by the caller into four half-resolution planes
(one per 2×2 CFA site); Siril's homographies of such frames are in full-
resolution CFA pixels: convert them with :func:`full_to_packed_homography`.

Interpolation of the target
---------------------------
The target is resampled with a **cubic B-spline** (``scipy.ndimage.
map_coordinates(order=3)``, with its prefilter). What resampling does:

- *Noise*: interpolation averages neighbouring pixels, which lowers the
  target's noise variance and correlates neighbours (white noise shifted by
  half a pixel in x and y: std × 0.75, neighbour correlation 0.26 with the
  cubic spline; bilinear: × 0.50 and 0.50). Harmless for Noise2Noise: its
  loss only needs target noise that is zero-mean and independent of the
  input's noise, and the input is never resampled.
- *Signal*: a smoothing kernel blurs stars, and the network learns whatever
  maps the input onto the target, blur included. Measured on noise-free,
  pixel-integrated stars shifted by (0.5, 0.5) px (worst case), warped value
  against the star rendered at the shifted position (peak ratio, FWHM ratio,
  deepest undershoot next to the star, as fractions of the peak)::

      Gaussian FWHM 1.5 px   peak   FWHM   undershoot
      bilinear               0.768  1.261   0
      cubic spline           0.982  1.031  -0.7 %
      Keys cubic / Lanczos-2 0.913  1.128  -1.7 %
      Lanczos-3              1.012  1.008  -2.0 %
      Gaussian FWHM 2.5 px
      bilinear               0.849  1.108   0
      cubic spline           0.987  1.010   0
      Lanczos-3              1.008  0.996   0
      Moffat (β 2.5) FWHM 1.5 px, RMS error / peak
      bilinear 1.33 %, cubic spline 0.05 %, Lanczos-3 0.21 % (peak +2.6 %)

  Bilinear loses 15–23 % of the peak of undersampled stars: a network trained
  on it would blur every star. Lanczos-3 and the cubic spline keep peaks
  within 2 %; the spline has a third of Lanczos-3's ringing on undersampled
  stars and the lowest error on Moffat profiles, so it is used. Flux (the
  sum) is kept by all of them. Integer translations (including identity)
  are exact copies: no interpolation at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from .errors import Cancelled, InputError
from .noise import mad_sigma

log = logging.getLogger("siril_denoise.pairs")

#: Pixels beyond which the cubic spline's four taps reach (target warp edges).
KERNEL_RADIUS = 2
#: Pixels kept away from zero (empty) borders of resampled frames: the taps,
#: plus the spline prefilter's reach (its error decays as 0.27^distance) and
#: the resampling that made the border in the first place.
ZERO_BORDER_MARGIN = 6
#: Extra pixels read around a crop's footprint so that the spline prefilter,
#: computed on that sub-block only, matches the whole-frame one (0.27^12 ≈ 1e-7).
_SPLINE_PAD = 12

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

_SINGLE_IMAGE_HINT = (
    "Noise2Noise needs at least two frames of the same target with the same "
    "size; for a single image use a single-image method (zsn2n or nb2nb)."
)


# --------------------------------------------------------------------------
# Homographies and masks


def _scale_matrix(factor: float) -> np.ndarray:
    """Map binned pixel coords to original ones for ``factor``×``factor`` bins.

    Binned pixel ``u`` covers original pixels ``factor·u … factor·u + factor − 1``,
    whose centre is at ``factor·u + (factor − 1)/2``.
    """
    off = (factor - 1) / 2.0
    return np.array([[factor, 0.0, off], [0.0, factor, off], [0.0, 0.0, 1.0]])


def full_to_packed_homography(h: np.ndarray) -> np.ndarray:
    """Convert a homography in full-resolution CFA pixels to packed-plane pixels.

    A packed pixel ``(u, v)`` covers the 2×2 CFA block whose centre is at
    full-resolution ``(2u + 0.5, 2v + 0.5)``; ``h`` maps frame to reference
    in full-resolution coordinates (as Siril stores it for CFA frames). The
    result maps packed frame coordinates to packed reference coordinates.
    The four planes' own half-pixel offsets inside the block are ignored: for
    rotations under a degree they move a sample by less than 0.01 packed px.
    """
    s = _scale_matrix(2)
    out = np.linalg.inv(s) @ np.asarray(h, dtype=np.float64) @ s
    return out / out[2, 2]


def packed_to_full_homography(h: np.ndarray) -> np.ndarray:
    """Inverse of :func:`full_to_packed_homography`."""
    s = _scale_matrix(2)
    out = s @ np.asarray(h, dtype=np.float64) @ np.linalg.inv(s)
    return out / out[2, 2]


def zero_border_mask(frame: np.ndarray) -> np.ndarray | None:
    """Valid-pixel mask of a frame that may have empty (zero) borders.

    ``frame`` is ``(C, H, W)``. Pixels that are exactly zero in every channel
    and connected to the image edge through such pixels are the empty borders
    left by resampling onto a reference; they are invalid (False). Isolated
    zeros inside the image are kept. Returns None when there is no such
    border (every pixel valid), to save memory on raw frames.
    """
    zero = np.all(frame == 0, axis=0)
    edge = np.zeros_like(zero)
    edge[0, :] = zero[0, :]
    edge[-1, :] = zero[-1, :]
    edge[:, 0] = zero[:, 0]
    edge[:, -1] = zero[:, -1]
    if not edge.any():
        return None
    border = ndimage.binary_propagation(edge, mask=zero)
    return ~border


def _erode(valid: np.ndarray, margin: int) -> np.ndarray:
    """Shrink a valid mask by ``margin`` px (also away from the image edge)."""
    return ndimage.binary_erosion(
        valid, structure=np.ones((2 * margin + 1, 2 * margin + 1), bool), border_value=0
    )


def _map_points(m: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply homography ``m`` to pixel coordinates (x = column, y = row)."""
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    qx = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den
    qy = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den
    return qx, qy


def _integer_shift(m: np.ndarray) -> tuple[int, int] | None:
    """(dx, dy) if ``m`` is a pure integer translation, else None."""
    m = m / m[2, 2]
    if not np.allclose(m[:2, :2], np.eye(2), atol=1e-9, rtol=0) or not np.allclose(
        m[2, :2], 0, atol=1e-12, rtol=0
    ):
        return None
    t = m[:2, 2]
    if np.allclose(t, np.round(t), atol=1e-6, rtol=0):
        return int(round(t[0])), int(round(t[1]))
    return None


# --------------------------------------------------------------------------
# Input checks


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames as float32 (C, H, W) arrays (no copy when already so), checked."""
    if frames is None or len(frames) < 2:
        n = 0 if frames is None else len(frames)
        raise InputError(f"Got {n} frame(s). {_SINGLE_IMAGE_HINT}")
    out = []
    for k, f in enumerate(frames):
        a = np.asarray(f, dtype=np.float32)
        if a.ndim != 3:
            raise InputError(
                f"Frame {k} has shape {a.shape}; expected (channels, height, width)."
            )
        if not np.isfinite(a).all():
            raise InputError(
                f"Frame {k} contains NaN or infinite pixels; repair or exclude it first."
            )
        out.append(a)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        desc = ", ".join(f"{k}: {a.shape}" for k, a in enumerate(out))
        raise InputError(f"Frames have different shapes ({desc}). {_SINGLE_IMAGE_HINT}")
    return out


def _luminance(frame: np.ndarray) -> np.ndarray:
    """Sum of channels, float32 (H, W): the image registration works on."""
    return frame.sum(axis=0, dtype=np.float32)


# --------------------------------------------------------------------------
# Registration


def register(
    frames: Sequence[np.ndarray],
    *,
    ref: int | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> list[np.ndarray]:
    """Find the homography of every frame onto a reference frame.

    ``frames`` are float32 ``(C, H, W)`` arrays of one target, same shape, any
    data units. Stars are matched on the luminance (sum of channels) with
    astroalign (similarity transform: shift, rotation, scale); a frame with
    too few stars falls back to phase correlation (translation only, to
    1/20 px). ``ref`` defaults to the middle frame (``len(frames) // 2``).

    Returns a list of 3×3 float64 homographies mapping each frame's pixel
    coordinates ``(x, y, 1)`` (x = column, y = row) onto the reference's; the
    reference's own is the identity. Raises :class:`InputError` naming the
    frame that cannot be registered.
    """
    frames = _check_frames(frames)
    n = len(frames)
    ref = n // 2 if ref is None else int(ref)
    if not 0 <= ref < n:
        raise InputError(f"Reference frame {ref} does not exist (frames 0..{n - 1}).")
    ref_lum = _luminance(frames[ref])
    ref_mask = zero_border_mask(frames[ref])
    out: list[np.ndarray] = []
    for k, frame in enumerate(frames):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        if progress is not None:
            progress(k / n, f"Registering frame {k + 1}/{n}")
        if k == ref:
            out.append(np.eye(3))
            continue
        out.append(_register_one(_luminance(frame), zero_border_mask(frame), ref_lum, ref_mask, k))
    if progress is not None:
        progress(1.0, f"Registered {n} frames onto frame {ref}")
    return out


def _register_one(
    lum: np.ndarray,
    mask: np.ndarray | None,
    ref_lum: np.ndarray,
    ref_mask: np.ndarray | None,
    index: int,
) -> np.ndarray:
    """Homography (frame → reference) of one luminance image."""
    import astroalign

    src = lum if mask is None else np.ma.array(lum, mask=~mask)
    dst = ref_lum if ref_mask is None else np.ma.array(ref_lum, mask=~ref_mask)
    try:
        tf, (src_pts, dst_pts) = astroalign.find_transform(src, dst)
        h = _refine_similarity(np.asarray(tf.params), src_pts, dst_pts)
        scale = np.sqrt(abs(np.linalg.det(h[:2, :2])))
        if len(src_pts) >= 4 and 0.95 < scale < 1.05:
            log.debug("frame %d: astroalign on %d stars", index, len(src_pts))
            return h
        log.info("frame %d: star match implausible (scale %.3f); trying phase correlation", index, scale)
    except Exception as exc:  # too few stars, no asterism match, sep buffer limits
        log.info("frame %d: star matching failed (%s); trying phase correlation", index, exc)
    return _register_phase(lum, mask, ref_lum, ref_mask, index)


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity (3×3) mapping ``src`` (x, y) points onto ``dst``."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tf = SimilarityTransform.from_estimate(src, dst)
        return np.asarray(tf.params) if tf else None
    tf = SimilarityTransform()
    return np.asarray(tf.params) if tf.estimate(src, dst) else None


def _refine_similarity(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Refit a similarity on all matched stars, dropping those off by > 3σ."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    keep = np.ones(len(src), bool)
    for _ in range(3):
        if keep.sum() < 3:
            break
        fit = _fit_similarity(src[keep], dst[keep])
        if fit is None:
            break
        h = fit
        res = np.hypot(*(_apply(h, src) - dst).T)
        # a scale of the match distances (a median of non-negative values, not a noise sigma)
        sigma = max(1.4826 * np.median(res[keep]), 0.02)
        new_keep = res < 3 * sigma
        if (new_keep == keep).all():
            break
        keep = new_keep
    return h


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    qx, qy = _map_points(h, pts[:, 0], pts[:, 1])
    return np.stack([qx, qy], axis=1)


def _register_phase(
    lum: np.ndarray,
    mask: np.ndarray | None,
    ref_lum: np.ndarray,
    ref_mask: np.ndarray | None,
    index: int,
) -> np.ndarray:
    """Translation-only homography by phase correlation, checked afterwards."""
    from skimage.registration import phase_cross_correlation

    def prep(img: np.ndarray, m: np.ndarray | None) -> np.ndarray:
        img = img - np.median(img if m is None else img[m])
        if m is not None:
            img = np.where(m, img, 0)
        return ndimage.gaussian_filter(img, 1.0)

    a, b = prep(ref_lum, ref_mask), prep(lum, mask)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=20, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    # Check: the shifted frame must correlate with the reference on the overlap.
    iy, ix = int(round(dy)), int(round(dx))
    h, w = a.shape
    ra = a[max(iy, 0): h + min(iy, 0), max(ix, 0): w + min(ix, 0)]
    rb = b[max(-iy, 0): h + min(-iy, 0), max(-ix, 0): w + min(-ix, 0)]
    corr = float(np.corrcoef(ra.ravel(), rb.ravel())[0, 1]) if ra.size > 100 else 0.0
    if not np.isfinite(corr) or corr < 0.2 or ra.size < 0.25 * a.size:
        raise InputError(
            f"Frame {index} could not be registered onto the reference: too few stars "
            f"and no common structure (correlation {corr:.2f}). Exclude it, or register "
            "the sequence in Siril first."
        )
    log.debug("frame %d: phase correlation shift (%.2f, %.2f), corr %.2f", index, dx, dy, corr)
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------
# Warping one crop


def warp_crop(
    frame: np.ndarray,
    m: np.ndarray,
    y0: int,
    x0: int,
    size: int,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``frame`` onto a ``size``×``size`` crop of another frame's grid.

    ``m`` (3×3) maps the crop frame's pixel coordinates (x = column, y = row)
    into ``frame``'s; the crop's top-left pixel is ``(y0, x0)``. ``frame`` is
    ``(C, H, W)`` float32; ``valid`` is its safe-pixel mask (already eroded)
    or None when every pixel is valid. Uses the cubic spline (see the module
    docstring), computed on the sub-block under the crop only; an integer
    translation is an exact copy.

    Returns ``(values, ok)``: float32 ``(C, size, size)`` in ``frame``'s data
    units, and a bool ``(size, size)`` mask of pixels whose spline taps all lie
    on valid pixels of ``frame``. Values where ``ok`` is False are arbitrary
    (finite).
    """
    c, h, w = frame.shape
    shift = _integer_shift(m)
    if shift is not None:
        dx, dy = shift
        ys = np.arange(y0, y0 + size) + dy
        xs = np.arange(x0, x0 + size) + dx
        iny = (ys >= 0) & (ys < h)
        inx = (xs >= 0) & (xs < w)
        vals = frame[:, np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]]
        ok = iny[:, None] & inx[None, :]
        if valid is not None:
            ok &= valid[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]]
        return vals, ok

    ys, xs = np.mgrid[y0: y0 + size, x0: x0 + size].astype(np.float64)
    qx, qy = _map_points(m, xs, ys)
    r = KERNEL_RADIUS
    ok = (qx >= r) & (qx <= w - 1 - r) & (qy >= r) & (qy <= h - 1 - r)
    if valid is not None:
        iy = np.clip(np.rint(qy).astype(np.intp), 0, h - 1)
        ix = np.clip(np.rint(qx).astype(np.intp), 0, w - 1)
        ok &= valid[iy, ix]
    vals = np.empty((c, size, size), np.float32)
    if not ok.any():
        vals[:] = 0
        return vals, ok
    r0 = int(max(np.floor(qy[ok].min()) - _SPLINE_PAD, 0))
    r1 = int(min(np.ceil(qy[ok].max()) + _SPLINE_PAD + 1, h))
    c0 = int(max(np.floor(qx[ok].min()) - _SPLINE_PAD, 0))
    c1 = int(min(np.ceil(qx[ok].max()) + _SPLINE_PAD + 1, w))
    coords = np.stack([qy - r0, qx - c0])
    for ch in range(c):
        sub = frame[ch, r0:r1, c0:c1].astype(np.float64)
        vals[ch] = ndimage.map_coordinates(sub, coords, order=3, mode="mirror")
    return vals, ok


# --------------------------------------------------------------------------
# Photometry


def flux_ratio(
    flux_i: np.ndarray,
    flux_j: np.ndarray,
    err_i: np.ndarray,
    err_j: np.ndarray,
    *,
    default: float = 1.0,
) -> float:
    """Transparency ratio ``a`` (frame j over frame i) from matched star fluxes.

    Arguments are 1-D arrays over the same stars (aperture sums above the
    local background, data units, and their 1σ errors; NaN where a star is
    unusable). Stars measured to better than 10 % in both frames vote; ``a``
    is the median of their flux ratios, which ignores the odd saturated core,
    cosmic ray or variable star. Returns ``default`` when fewer than 5 stars
    vote or their median is not known to 1 %: the sampler passes the ratio
    measured on the luminance (transparency is nearly grey), itself 1.0 when
    undetermined (10-s Seestar subs of M94 have ~10 stars at S/N > 20 whose
    ratios scatter by 2–4 %, so there it stays 1).
    """
    good = (
        np.isfinite(flux_i) & np.isfinite(flux_j) & (flux_i > 10 * err_i) & (flux_j > 10 * err_j)
    )
    if good.sum() < 5:
        log.debug("only %d usable stars for a photometric scale", good.sum())
        return default
    ratio = flux_j[good] / flux_i[good]
    a = float(np.median(ratio))
    se = 1.2533 * mad_sigma(ratio) / np.sqrt(ratio.size)  # standard error of a median
    if not (se < 0.01 and 0.5 < a < 2.0):
        log.debug("photometric scale undetermined (%.3f ± %.3f)", a, se)
        return default
    return a


def background_blocks(x: np.ndarray) -> np.ndarray:
    """Bool mask of the background in a 2-D block-mean image (NaN = invalid).

    Background blocks lie within 3σ of a 9-block running median of ``x``
    (σ from the median absolute deviation): stars and bright cores excluded.
    """
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return ok
    filled = np.where(ok, x, np.median(x[ok]))
    d = filled - ndimage.median_filter(filled, size=9, mode="nearest")
    noise = mad_sigma(d[ok])
    return ok & (np.abs(d) <= 3 * noise)


def sky_offset(x: np.ndarray, y: np.ndarray, a: float, background: np.ndarray | None = None) -> float:
    """Offset ``b`` in ``y ≈ a·x + b`` over the background of two block images.

    ``x`` and ``y`` are 2-D block means of the same sky in frames i and j
    (data units, NaN where invalid); ``background`` is
    :func:`background_blocks` of ``x`` (computed when None). ``b`` is the
    median of ``y − a·x`` over background blocks valid in both.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 0.0
    if background is None:
        background = background_blocks(x)
    use = ok & background
    if use.sum() < 10:
        use = ok
    return float(np.median(y[use] - a * x[use]))


def _star_photometry(
    frames: list[np.ndarray],
    homographies: list[np.ndarray],
    safe: list[np.ndarray | None],
    indices: list[int],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Aperture fluxes of the same stars in every frame and channel.

    Stars are found (sep, 5σ) on the luminance of the first frame in
    ``indices``, mapped into each frame through the homographies, and summed
    in a circular aperture (4 half-light radii, 3–12 px) with a local-
    background annulus. Returns ``(flux, err)``, float64 ``(N, C + 1, S)``:
    channels, then the luminance (sum of channels) last; NaN where a star is
    off a frame, near an invalid pixel, or flagged. None when sep is missing
    or fewer than 5 stars are found.
    """
    try:
        import sep
    except ImportError:
        log.warning("sep is not installed; frames are assumed to share one transparency")
        return None
    k0 = indices[0]
    lum = np.ascontiguousarray(_luminance(frames[k0]), dtype=np.float32)
    mask0 = None if safe[k0] is None else ~safe[k0]
    try:
        bkg = sep.Background(lum, mask=mask0)
        objs = sep.extract(lum - bkg.back(), 5, err=bkg.globalrms, minarea=5, mask=mask0)
    except Exception as exc:  # sep raises plain Exceptions on odd data
        log.info("star detection for photometry failed: %s", exc)
        return None
    objs = objs[(objs["flag"] == 0) & (objs["peak"] < 0.8 * (lum.max() - np.median(lum)))]
    if len(objs) < 5:
        return None
    hl, _ = sep.flux_radius(lum - bkg.back(), objs["x"], objs["y"], 6.0 * np.ones(len(objs)), 0.5)
    r = float(np.clip(4.0 * np.nanmedian(hl), 3.0, 12.0))
    ann = (r + 2.0, r + 6.0)
    ref_xy = _apply(homographies[k0], np.stack([objs["x"], objs["y"]], 1).astype(np.float64))
    n, c = len(frames), frames[0].shape[0]
    h, w = frames[0].shape[1:]
    flux = np.full((n, c + 1, len(objs)), np.nan)
    err = np.full_like(flux, np.nan)
    for k in indices:
        xy = _apply(np.linalg.inv(homographies[k]), ref_xy)
        x, y = xy[:, 0], xy[:, 1]
        pad = ann[1] + 1
        inside = (x > pad) & (x < w - 1 - pad) & (y > pad) & (y < h - 1 - pad)
        if safe[k] is not None:
            inside &= safe[k][np.clip(np.rint(y).astype(int), 0, h - 1), np.clip(np.rint(x).astype(int), 0, w - 1)]
        if not inside.any():
            continue
        for ch in range(c + 1):
            plane = np.ascontiguousarray(frames[k][ch] if ch < c else _luminance(frames[k]))
            sig = mad_sigma(plane[::4, ::4])
            f, e, flag = sep.sum_circle(plane, x[inside], y[inside], r, err=max(sig, 1e-30), bkgann=ann)
            f = np.where(flag == 0, f, np.nan)
            flux[k, ch, inside] = f
            err[k, ch, inside] = e
    return flux, err


def _photometry_blocks(
    frame: np.ndarray, h_to_ref: np.ndarray, valid: np.ndarray | None, block: int = 4
) -> np.ndarray:
    """Frame warped (bilinear) onto a binned reference grid, as block means.

    Returns float64 ``(C, nby, nbx)``; NaN where the frame does not cover the
    block or any of its pixels is invalid. Both frames of a pair go through
    the same binning and warp onto the same grid, for :func:`sky_offset`.
    """
    c, h, w = frame.shape
    f = max(1, int(round(min(h, w) / 256)))
    hb, wb = h // f, w // f
    data = frame[:, : hb * f, : wb * f]
    if valid is not None:
        data = np.where(valid[: hb * f, : wb * f], data, np.float32(np.nan))
    binned = data.reshape(c, hb, f, wb, f).mean(axis=(2, 4), dtype=np.float64)
    s = _scale_matrix(f)
    m = np.linalg.inv(np.linalg.inv(s) @ h_to_ref @ s)  # binned ref → binned frame
    ys, xs = np.mgrid[0:hb, 0:wb].astype(np.float64)
    qx, qy = _map_points(m, xs, ys)
    warped = np.stack([
        ndimage.map_coordinates(binned[ch], [qy, qx], order=1, mode="constant", cval=np.nan)
        for ch in range(c)
    ])
    nby, nbx = hb // block, wb // block
    warped = warped[:, : nby * block, : nbx * block]
    return warped.reshape(c, nby, block, nbx, block).mean(axis=(2, 4))


# --------------------------------------------------------------------------
# Pairs


@dataclass(frozen=True)
class PairStats:
    """One training pair (input frame ``i``, target frame ``j``).

    ``overlap``: fraction of frame ``i``'s pixels where ``j`` gives a valid
    target. ``scale``/``offset``: per channel, ``j ≈ scale·i + offset`` in data
    units; targets are returned as ``(j − offset)/scale``.
    """

    i: int
    j: int
    overlap: float
    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def as_dict(self) -> dict:
        return {"i": self.i, "j": self.j, "overlap": round(self.overlap, 4),
                "scale": [round(v, 5) for v in self.scale],
                "offset": [round(v, 4) for v in self.offset]}


class PairSampler:
    """Random Noise2Noise training crops from the frames of one session.

    Parameters
    ----------
    frames
        N ≥ 2 float32 ``(C, H, W)`` arrays of one target, same shape, in data
        units (mono C=1, RGB C=3, Bayer packed into C=4 half-resolution
        planes). They are kept by reference, not copied.
    homographies
        One 3×3 matrix per frame mapping its pixel coordinates onto the
        reference frame's (Siril's ``regparam`` H, converted with
        :func:`full_to_packed_homography` for packed CFA frames). Pass
        identities for frames already resampled onto the reference; None to
        find them with :func:`register`.
    masks
        Optional bool ``(H, W)`` per frame (True = usable). Zero borders are
        always masked too.
    indices
        Frames this sampler may use (default: all). Leave a validation frame
        out here; it still takes part in registration.
    ref
        Reference frame for :func:`register` when ``homographies`` is None.
    min_overlap
        Pairs sharing less than this fraction of frame ``i`` are skipped.

    Each pair's photometry is fitted once, here: the scale from aperture
    fluxes of the same stars in both frames (:func:`flux_ratio`), the offset
    from block means of both frames' backgrounds resampled onto a binned
    reference grid (:func:`sky_offset`).
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        homographies: Sequence[np.ndarray] | None = None,
        *,
        masks: Sequence[np.ndarray | None] | None = None,
        indices: Sequence[int] | None = None,
        ref: int | None = None,
        min_overlap: float = 0.2,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> None:
        self.frames = _check_frames(frames)
        n = len(self.frames)
        self.channels, self.height, self.width = self.frames[0].shape
        if indices is None:
            indices = list(range(n))
        self.indices = sorted({int(k) for k in indices})
        if any(not 0 <= k < n for k in self.indices):
            raise InputError(f"Frame indices {list(indices)} out of range 0..{n - 1}.")
        if len(self.indices) < 2:
            raise InputError(f"Only {len(self.indices)} frame(s) left for training. {_SINGLE_IMAGE_HINT}")
        if masks is not None and len(masks) != n:
            raise InputError(f"Got {len(masks)} masks for {n} frames.")

        if homographies is None:
            homographies = register(self.frames, ref=ref, progress=progress, should_cancel=should_cancel)
        if len(homographies) != n:
            raise InputError(f"Got {len(homographies)} homographies for {n} frames.")
        self.homographies = [np.asarray(hm, np.float64) / hm[2][2] for hm in homographies]

        # Per-frame valid masks: raw (for photometry) and eroded (for crops).
        self._valid: list[np.ndarray | None] = []
        self._safe: list[np.ndarray | None] = []
        for k, f in enumerate(self.frames):
            v = zero_border_mask(f)
            if masks is not None and masks[k] is not None:
                mk = np.asarray(masks[k], bool)
                if mk.shape != f.shape[1:]:
                    raise InputError(f"Mask {k} has shape {mk.shape}; frame is {f.shape[1:]}.")
                v = mk if v is None else (v & mk)
            self._valid.append(v)
            self._safe.append(None if v is None else _erode(v, ZERO_BORDER_MARGIN))

        # Pair geometry (i → j coordinates), overlap and photometry.
        blocks = {}
        for step, k in enumerate(self.indices):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            if progress is not None:
                progress(step / len(self.indices), "Matching frame photometry")
            blocks[k] = _photometry_blocks(self.frames[k], self.homographies[k], self._valid[k])
        background = {k: [background_blocks(bl) for bl in blocks[k]] for k in blocks}
        stars = _star_photometry(self.frames, self.homographies, self._safe, self.indices)
        self._m: dict[tuple[int, int], np.ndarray] = {}
        self._ab: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.stats: list[PairStats] = []
        for i in self.indices:
            for j in self.indices:
                if i == j:
                    continue
                m = np.linalg.inv(self.homographies[j]) @ self.homographies[i]
                overlap = self._overlap(i, j, m)
                if overlap < min_overlap:
                    log.info("pair (%d, %d) skipped: overlap %.2f", i, j, overlap)
                    continue
                a = np.ones(self.channels)
                b = np.zeros(self.channels)
                if stars is not None:
                    fl, er = stars
                    grey = flux_ratio(fl[i, -1], fl[j, -1], er[i, -1], er[j, -1])
                for ch in range(self.channels):
                    if stars is not None:
                        a[ch] = flux_ratio(fl[i, ch], fl[j, ch], er[i, ch], er[j, ch], default=grey)
                    b[ch] = sky_offset(blocks[i][ch], blocks[j][ch], a[ch], background[i][ch])
                self._m[(i, j)] = m
                self._ab[(i, j)] = (a.astype(np.float32), b.astype(np.float32))
                self.stats.append(PairStats(i, j, overlap, tuple(map(float, a)), tuple(map(float, b))))
        if not self.stats:
            raise InputError(
                "No two frames overlap enough to make training pairs; check the "
                "registration or use a single-image method (zsn2n or nb2nb)."
            )
        self.pairs = [(s.i, s.j) for s in self.stats]
        if progress is not None:
            progress(1.0, f"{len(self.pairs)} training pairs from {len(self.indices)} frames")

    def _input_ok(self, i: int, y0: int, x0: int, size: int) -> np.ndarray:
        safe = self._safe[i]
        if safe is None:
            return np.ones((size, size), bool)
        return safe[y0: y0 + size, x0: x0 + size]

    def _overlap(self, i: int, j: int, m: np.ndarray) -> float:
        """Fraction of frame i (on a ~256² grid) where both i and j are usable."""
        step = max(1, min(self.height, self.width) // 256)
        ys, xs = np.mgrid[0: self.height: step, 0: self.width: step]
        ok = np.ones(ys.shape, bool) if self._safe[i] is None else self._safe[i][ys, xs]
        qx, qy = _map_points(m, xs.astype(np.float64), ys.astype(np.float64))
        r = KERNEL_RADIUS
        ok &= (qx >= r) & (qx <= self.width - 1 - r) & (qy >= r) & (qy <= self.height - 1 - r)
        if self._safe[j] is not None:
            iy = np.clip(np.rint(qy).astype(np.intp), 0, self.height - 1)
            ix = np.clip(np.rint(qx).astype(np.intp), 0, self.width - 1)
            ok &= self._safe[j][iy, ix]
        return float(ok.mean())

    def pair(self, i: int, j: int, y0: int, x0: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop of pair (i, j) at top-left ``(y0, x0)`` of frame i.

        Returns ``(inp, tgt, ok)``: float32 ``(C, size, size)`` input from
        frame i as stored, target from frame j warped onto it and normalised to
        i's level and flux, and the bool ``(size, size)`` mask of pixels valid
        in both. Where ``ok`` is False the target equals the input.
        """
        inp = self.frames[i][:, y0: y0 + size, x0: x0 + size]
        tgt, ok = warp_crop(self.frames[j], self._m[(i, j)], y0, x0, size, self._safe[j])
        ok &= self._input_ok(i, y0, x0, size)
        a, b = self._ab[(i, j)]
        tgt = (tgt - b[:, None, None]) / a[:, None, None]
        tgt = np.where(ok, tgt, inp).astype(np.float32)
        return inp, tgt, ok

    def sample(
        self, rng: np.random.Generator, crop: int, batch: int, *, min_valid: float = 0.5, targets: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw a batch of training crops.

        A pair (i, j) is drawn uniformly among :attr:`pairs`, then a crop
        position uniformly over frame i, redrawn until at least ``min_valid``
        of the crop is valid in both frames (so crops are uniform over the
        pair's valid region). Returns ``(inp, tgt, mask)``, each float32
        ``(batch, C, crop, crop)``: input in frame i's own geometry and data
        units, target as in :meth:`pair`, mask 1 where both are valid, else 0
        (the same for every channel). Nothing is clipped.

        With ``targets`` = K > 1 the target combines K different frames
        warped onto frame i (j and K − 1 more partners of i, fewer when i has
        fewer), each pixel over the frames valid there. Its expectation is
        the same clean signal, its noise variance about K times lower, so
        each step's gradient is less noisy; none of the K is frame i.
        """
        if crop > min(self.height, self.width):
            raise InputError(
                f"Training crop {crop} px is larger than the frames "
                f"({self.height}×{self.width}); use a smaller crop."
            )
        shape = (batch, self.channels, crop, crop)
        inp = np.empty(shape, np.float32)
        tgt = np.empty(shape, np.float32)
        mask = np.empty(shape, np.float32)
        for n in range(batch):
            for _ in range(1000):
                i, j = self.pairs[rng.integers(len(self.pairs))]
                y0 = int(rng.integers(self.height - crop + 1))
                x0 = int(rng.integers(self.width - crop + 1))
                if self._input_ok(i, y0, x0, crop).mean() < min_valid:
                    continue
                a, t, ok = self.pair(i, j, y0, x0, crop)
                if ok.mean() >= min_valid:
                    break
            else:
                raise InputError(
                    f"Could not find {crop}×{crop} crops that are valid in two frames; "
                    "the frames overlap too little. Use a smaller crop."
                )
            if targets > 1:
                t, ok = self._mean_target(rng, i, j, y0, x0, crop, targets, a, t, ok)
            inp[n], tgt[n], mask[n] = a, t, ok[None]
        return inp, tgt, mask

    def _mean_target(self, rng, i, j, y0, x0, size, k, inp, tgt, ok):
        """Mean of ``tgt`` (pair (i, j)) and up to k − 1 other partners of i, per pixel over the valid ones.

        A plain mean: min/max rejection (as stacking does against hot pixels)
        was measured 0.8 dB worse on the faint 512² session at seed 0.
        """
        others = [b for a, b in self.pairs if a == i and b != j]
        extra = rng.choice(len(others), size=min(k - 1, len(others)), replace=False) if others else []
        total = np.where(ok, tgt, 0.0)
        count = ok.astype(np.float32)
        for e in extra:
            _, t, v = self.pair(i, others[int(e)], y0, x0, size)
            total += np.where(v, t, 0.0)
            count += v
        ok = count > 0
        return np.where(ok, total / np.maximum(count, 1), inp).astype(np.float32), ok

    def pair_stats(self) -> list[dict]:
        """Per-pair overlap and photometry, as plain dicts for logs and metadata."""
        return [s.as_dict() for s in self.stats]
