"""Siril pixel layouts to the engine's working form and back, and Bayer packing.

Siril hands out mono images as ``(H, W)`` and colour images as planar
``(C, H, W)``, with dtype ``uint16`` (raw ADU, 0..65535) or ``float32``
(normally in [0, 1], negatives possible). The engine works on float32
``(C, H, W)`` arrays in the *same units* as the input, and gives results back
in the input's dtype and layout.

A raw one-shot-colour frame is a mono ``(H, W)`` mosaic. :func:`pack_cfa`
turns each 2×2 Bayer block into 4 half-resolution planes, so that
neighbouring pixels in a plane are the same colour, and :func:`unpack_cfa`
undoes it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .noise import mad_sigma

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

#: Smallest side, in pixels, of an image the engine accepts (after CFA packing).
MIN_SIDE = 16


@dataclass(frozen=True)
class LayoutInfo:
    """What :func:`to_working` needs to restore the caller's layout.

    Attributes:
        dtype: the input dtype (``uint16`` or ``float32``).
        ndim: 2 for ``(H, W)``, 3 for ``(C, H, W)``.
        shape: the input shape.
        cfa_pattern: the Bayer pattern when the data were packed, else None.
    """

    dtype: np.dtype
    ndim: int
    shape: tuple[int, ...]
    cfa_pattern: str | None = None

    @property
    def saturation(self) -> float:
        """The largest representable value in the caller's units."""
        return 65535.0 if self.dtype == np.uint16 else 1.0


def normalise_pattern(pattern: str | None) -> str | None:
    """Return an upper-case Bayer pattern, None for no CFA, or raise InputError."""
    if pattern is None or str(pattern).strip() == "" or str(pattern).upper() == "NONE":
        return None
    p = str(pattern).strip().upper()
    if p not in BAYER_PATTERNS:
        raise InputError(f"Unknown Bayer pattern {pattern!r}: expected one of {', '.join(BAYER_PATTERNS)}.")
    return p


def check_finite(data: np.ndarray, what: str = "The image") -> None:
    """Raise InputError if ``data`` holds NaN or infinite pixels, or is constant."""
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        n = int(bad.sum())
        if n:
            raise InputError(
                f"{what} has {n} NaN or infinite pixel(s). Replace them first "
                "(e.g. Siril's 'Find hot pixels'/'Cosmetic correction', or fill the borders) and try again."
            )
    lo, hi = data.min(), data.max()
    if lo == hi:
        raise InputError(f"{what} is constant (every pixel is {float(lo):g}): there is no noise to learn or remove.")


def to_working(data: np.ndarray, cfa_pattern: str | None = None) -> tuple[np.ndarray, LayoutInfo]:
    """Convert a Siril-layout array to the working form.

    Args:
        data: ``(H, W)`` or ``(C, H, W)``; ``uint16`` (ADU) or float (kept as is).
        cfa_pattern: Bayer pattern of a raw mono mosaic ('RGGB', 'BGGR',
            'GRBG', 'GBRG') to pack it into 4 planes, or None.

    Returns:
        ``(work, info)``: ``work`` is float32 ``(C, H', W')`` in the input's
        units (C = 4 and half size for a packed CFA frame); ``info`` restores
        the layout with :func:`from_working`.
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(f"Expected an image of shape (H, W) or (C, H, W); got shape {data.shape}.")
    if data.ndim == 3 and data.shape[0] not in (1, 3) and data.shape[-1] in (1, 3):
        raise InputError(
            f"Got shape {data.shape}, which looks channel-last (H, W, C); Siril's layout is planar (C, H, W)."
        )
    if data.dtype.kind not in "uif":
        raise InputError(f"Unsupported pixel type {data.dtype}: expected uint16 or float32.")
    check_finite(data)
    pattern = normalise_pattern(cfa_pattern)
    dtype = np.dtype(np.uint16) if data.dtype == np.uint16 else np.dtype(np.float32)
    info = LayoutInfo(dtype=dtype, ndim=data.ndim, shape=tuple(data.shape), cfa_pattern=pattern)
    work = data.astype(np.float32, copy=True)
    if work.ndim == 2:
        work = work[None]
    if pattern is not None:
        if work.shape[0] != 1:
            raise InputError(
                f"A Bayer pattern ({pattern}) was given but the image has {work.shape[0]} channels; "
                "CFA packing applies to raw (undebayered) mono mosaics only."
            )
        work = pack_cfa(work[0])
    if min(work.shape[1:]) < MIN_SIDE:
        raise InputError(
            f"The image is too small ({'x'.join(map(str, data.shape[-2:]))} pixels); "
            f"at least {MIN_SIDE * (2 if pattern else 1)} pixels per side are needed."
        )
    return work, info


def from_working(work: np.ndarray, info: LayoutInfo) -> np.ndarray:
    """Convert a working array back to the caller's dtype and layout.

    uint16 output is rounded and limited to [0, 65535] (the only place values
    are limited, because the file format demands it); float32 output is not
    clipped.
    """
    out = np.asarray(work, dtype=np.float32)
    if info.cfa_pattern is not None:
        out = unpack_cfa(out, info.shape[-2:])[None]
    if info.ndim == 2:
        out = out[0]
    if out.shape != info.shape:
        raise ValueError(f"Shape {out.shape} does not match the input's {info.shape}")
    if info.dtype == np.uint16:
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return out.astype(np.float32, copy=False)


def pack_cfa(mosaic: np.ndarray) -> np.ndarray:
    """Pack a Bayer mosaic ``(H, W)`` into 4 planes ``(4, ceil(H/2), ceil(W/2))``.

    Plane k holds the pixels at (row % 2, col % 2) = divmod(k, 2), i.e. planes
    are in the order of the pattern string (for 'RGGB': R, G1, G2, B). An odd
    last row or column is completed with the same-colour row/column two
    pixels before it, which :func:`unpack_cfa` drops again.
    """
    h, w = mosaic.shape
    if h < 2 or w < 2:
        raise InputError(f"A CFA mosaic needs at least 2x2 pixels; got {h}x{w}.")
    m = mosaic
    if h % 2:
        m = np.concatenate([m, m[-2:-1]], axis=0)
    if w % 2:
        m = np.concatenate([m, m[:, -2:-1]], axis=1)
    return np.stack([m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2]]).astype(np.float32, copy=False)


def unpack_cfa(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_cfa`: 4 planes back into an ``(H, W)`` mosaic."""
    if planes.shape[0] != 4:
        raise ValueError(f"Expected 4 CFA planes, got {planes.shape[0]}")
    h2, w2 = planes.shape[1:]
    m = np.empty((2 * h2, 2 * w2), dtype=planes.dtype)
    m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2] = planes
    return m[: shape[0], : shape[1]]


def mosaic_noise_correlation(mosaic: np.ndarray, size: int = 512) -> float:
    """Correlation of the noise of neighbouring pixels in a mono ``(H, W)`` mosaic, 0..1.

    In a raw Bayer mosaic neighbouring pixels are different colour sites with
    independent noise: ~0 (0.001 on Seestar S50 frames). Resampling the
    mosaic as if it were one image (what Siril 1.4.4's ``register`` does to a
    raw sequence, keeping ``BAYERPAT``) mixes sites, and their noise: 0.13-0.24
    on the same frames. Measured on a central crop of at most ``size`` px:
    each site plane minus the mean of its 4 same-colour neighbours, clipped at
    3 sigma, correlated with the next pixel along x and along y; the larger.
    """
    h, w = mosaic.shape[-2:]
    ch, cw = min(h, size) // 2 * 2, min(w, size) // 2 * 2
    y0, x0 = (h - ch) // 4 * 2, (w - cw) // 4 * 2
    crop = np.asarray(mosaic, dtype=np.float64).reshape(h, w)[y0:y0 + ch, x0:x0 + cw]
    if ch < 8 or cw < 8:
        return 0.0
    resid = np.empty((ch - 4, cw - 4))
    for dy in range(2):
        for dx in range(2):
            p = crop[dy::2, dx::2]
            neighbours = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4.0
            resid[dy::2, dx::2] = p[1:-1, 1:-1] - neighbours
    spread = mad_sigma(resid)
    if not spread > 0:
        return 0.0
    keep = np.abs(resid) < 3 * spread
    corr = []
    for a, b, k in ((resid[:, :-1], resid[:, 1:], keep[:, :-1] & keep[:, 1:]),
                    (resid[:-1], resid[1:], keep[:-1] & keep[1:])):
        if k.sum() > 16:
            corr.append(abs(float(np.corrcoef(a[k], b[k])[0, 1])))
    return max(corr) if corr else 0.0


#: Above this :func:`mosaic_noise_correlation`, a frame that says BAYERPAT is no longer a mosaic.
INTERPOLATED_MOSAIC_CORRELATION = 0.05


def is_raw_mosaic(mosaic: np.ndarray) -> bool:
    """False when a mono frame that carries a Bayer pattern was resampled (interpolated)."""
    return mosaic_noise_correlation(mosaic) <= INTERPOLATED_MOSAIC_CORRELATION
