"""Noise2Void (Krull et al., CVPR 2019) with the N2V2 fixes (Höck et al., 2022).

A network that predicts a pixel from its neighbours alone cannot predict
that pixel's noise, when the noise is independent between pixels. Noise2Void
trains an ordinary network to do so on the image itself: in every crop a
few pixels are hidden, each replaced by the median of its 5×5 neighbourhood
(centre excluded, N2V2's replacement: the hidden value leaves no trace), and
the loss is measured at those pixels only, against their original noisy
values:

    L = Σ_p m_p · (f(x̃)_p − y_p)² / var_p  /  Σ_p m_p

with x̃ the crop with the hidden pixels replaced, y the crop in data units
and m the mask of hidden pixels. E[y_p | x̃] is the clean value, so the
minimiser is a denoiser. Errors are in data units, variance-weighted and
squared up to 4σ (:mod:`.domain`), as in every method; the network sees the
variance-stabilised (GAT) crop.

The hidden pixels sit one per cell of ``cell``×``cell`` pixels, at an offset
drawn in the cell's first ``cell − 2`` rows and columns: two hidden pixels
are then always at least 3 px apart, so none lies in another's 5×5 window
and no hidden value enters the input through another's replacement. With
``cell = 6`` 2.8 % of the pixels are hidden per crop. The mask is the same
for every plane of a pixel: for raw Bayer data (four packed CFA planes) a
hidden pixel is a whole 2×2 Bayer block, for colour every channel.

Validation scores the same loss on held-out crops and masks. The untouched
input, scored that way, predicts each hidden pixel by its replacement (the
5×5 median): on pure sky noise even a perfect denoiser beats it by only a
few per cent (the median of 24 pixels has a variance of ≈ 0.07 σ²), but
the median misses star peaks by many σ, so on a real field the gain is
large (the 256² faint bench sub: input 8.4, the model after 300 steps
1.55).

Like every blind-spot method, it needs noise independent between
neighbouring pixels: not for registered (resampled) frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..noise import Normaliser
from .crops import random_crops
from .domain import LinearDomain

if TYPE_CHECKING:
    from .registry import TrainingData

#: Side of the cell holding one hidden pixel (2.8 % of the pixels at 6).
CELL = 6
#: Half-width of the replacement window (5×5).
RADIUS = 2


def blind_spot_mask(rng: np.random.Generator, n: int, h: int, w: int, cell: int = CELL) -> np.ndarray:
    """Hidden-pixel masks ``(n, 1, h, w)`` float32 0/1: one pixel per ``cell``×``cell`` cell.

    Offsets within a cell are drawn in ``[0, cell − RADIUS − 1]``, so two
    hidden pixels are at least ``RADIUS + 1`` px apart along a row or a
    column (Chebyshev distance): neither is in the other's 5×5 window.
    """
    if cell < RADIUS + 2:
        raise ValueError(f"cell must be at least {RADIUS + 2}")
    span = cell - RADIUS
    gy, gx = h // cell, w // cell
    mask = np.zeros((n, 1, h, w), dtype=np.float32)
    oy = rng.integers(0, span, size=(n, gy, gx))
    ox = rng.integers(0, span, size=(n, gy, gx))
    ys = oy + cell * np.arange(gy)[None, :, None]
    xs = ox + cell * np.arange(gx)[None, None, :]
    b = np.broadcast_to(np.arange(n)[:, None, None], ys.shape)
    mask[b, 0, ys, xs] = 1.0
    return mask


def replace_masked(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``z`` ``(n, C, h, w)`` with each masked pixel set to the median of its 5×5 window, centre excluded.

    Window pixels beyond the crop do not count. Returns a new array.
    """
    out = np.array(z, dtype=np.float32, copy=True)
    b, _, ys, xs = np.nonzero(mask)
    if b.size == 0:
        return out
    r = RADIUS
    pad = np.pad(z, ((0, 0), (0, 0), (r, r), (r, r)), constant_values=np.nan)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = (dy != 0) | (dx != 0)
    dy, dx = dy[keep], dx[keep]  # the 24 neighbours
    win = pad[b[:, None], :, (ys[:, None] + r + dy), (xs[:, None] + r + dx)]  # (k, 24, C)
    med = np.nanmedian(win, axis=1)  # (k, C)
    out[b, :, ys, xs] = med
    return out


class Noise2Void:
    """N2V on crops of one or more images (data units, ``(C, H, W)``).

    Args:
        images: float32 ``(C, H, W)`` arrays in data units.
        normaliser: maps data units to the network domain.
        cell: one hidden pixel per ``cell``×``cell`` cell (at least 4).
    """

    name = "n2v"
    #: forward passes per sample: (fraction of the crop's pixels, with gradient); for FLOP counts
    passes = ((1.0, True),)

    def __init__(self, images: list[np.ndarray], normaliser: Normaliser, cell: int = CELL) -> None:
        self.images = images
        self.domain = LinearDomain(normaliser)
        self.cell = int(cell)

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        y = random_crops(self.images, rng, crop, batch)
        mask = blind_spot_mask(rng, batch, y.shape[2], y.shape[3], self.cell)
        return replace_masked(self.domain.forward_np(y), mask), y, mask

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self.sample(rng, crop, batch) for _ in range(n)]

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        z, y, mask = batch
        return self.domain.loss(net(z), y, mask)


def build(data: TrainingData) -> Noise2Void:
    """Noise2Void on crops of all of ``data.frames`` (the registry's builder)."""
    return Noise2Void(data.frames, data.normaliser)
