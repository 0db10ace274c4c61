"""Neighbor2Neighbor (Huang et al., CVPR 2021).

A random neighbour sub-sampler G = (g1, g2) picks, in every 2×2 cell of the
noisy image y, one pixel for g1(y) and one of its horizontal or vertical
neighbours in the cell for g2(y): two half-resolution images with nearly the
same signal and independent noise. With f the denoiser and γ > 0,

    L = ‖f(g1(y)) − g2(y)‖² + γ ‖f(g1(y)) − g2(y) − (g1(f(y)) − g2(f(y)))‖²

where f(y) is computed without gradient. The regulariser corrects for the
small signal difference between the two sub-images. Errors are measured in
data units, variance-weighted, squared up to 4σ and linear beyond
(:mod:`.domain`). Like every blind-spot style
method it needs noise independent between neighbouring pixels: not for
registered (resampled) frames.
"""

from __future__ import annotations

import numpy as np
import torch

from ..noise import Normaliser
from .crops import random_crops
from .domain import LinearDomain, robust_square
from .registry import TrainingData

# Cell positions (0,0), (0,1), (1,0), (1,1) as flat indices 0..3; neighbours
# share a row or a column.
_NEIGHBOURS = np.array([[1, 2], [0, 3], [0, 3], [1, 2]])


def neighbour_masks(rng: np.random.Generator, n: int, h2: int, w2: int) -> tuple[np.ndarray, np.ndarray]:
    """Random cell indices (0..3) for g1 and g2, each ``(n, h2, w2)``."""
    i1 = rng.integers(0, 4, size=(n, h2, w2))
    i2 = _NEIGHBOURS[i1, rng.integers(0, 2, size=(n, h2, w2))]
    return i1, i2


def subsample(y, idx):
    """Pick one pixel per 2×2 cell: ``y`` (N,C,H,W) numpy or torch, ``idx`` (N,H/2,W/2) in 0..3."""
    n, c, h, w = y.shape
    if isinstance(y, np.ndarray):
        cells = y.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        return np.take_along_axis(cells, np.broadcast_to(idx[:, None, :, :, None], (n, c, h // 2, w // 2, 1)), 4)[..., 0]
    cells = y.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    index = idx[:, None, :, :, None].expand(n, c, h // 2, w // 2, 1)
    return torch.gather(cells, 4, index)[..., 0]


class Neighbor2Neighbor:
    """Nb2Nb on crops of one or more images (data units, ``(C, H, W)``)."""

    #: forward passes per sample: (fraction of the crop's pixels, with gradient); for FLOP counts
    passes = ((0.25, True), (1.0, False))

    def __init__(self, images: list[np.ndarray], normaliser: Normaliser, gamma: float = 2.0) -> None:
        self.images = images
        self.domain = LinearDomain(normaliser)
        self.gamma = gamma

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        y = random_crops(self.images, rng, crop, batch)
        i1, i2 = neighbour_masks(rng, batch, y.shape[2] // 2, y.shape[3] // 2)
        g1, g2 = subsample(y, i1), subsample(y, i2)
        f = self.domain.forward_np
        return f(y), f(g1), g2, i1, i2

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self.sample(rng, crop, batch) for _ in range(n)]

    def _terms(self, net: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
        zy, zg1, g2, i1, i2 = batch
        i1, i2 = i1.long(), i2.long()
        dom = self.domain
        out, var = dom.to_linear(net(zg1))
        with torch.no_grad():
            full, _ = dom.to_linear(net(zy))
        diff = out - g2
        reg = diff - (subsample(full, i1) - subsample(full, i2))
        sd = torch.sqrt(var)
        # Huber beyond 4σ, as every method's loss: a hot pixel or cosmic ray
        # picked into g2 would otherwise dominate the gradient.
        return torch.mean(robust_square(diff / sd)), torch.mean(robust_square(reg / sd))

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        data, reg = self._terms(net, batch)
        return data + self.gamma * reg

    def val_loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        """The data term alone, ‖f(g1) − g2‖² (weighted): lowest for the best denoiser.

        The regulariser is no score: for the ideal denoiser its residual is
        g2's noise (≈ 1 per pixel, normalised), for the untouched input it is
        exactly 0. With γ = 2 the full loss is about 3 for the ideal denoiser
        and 2 for the identity, so the best checkpoint would be the input.
        """
        return self._terms(net, batch)[0]


def build(data: TrainingData) -> Neighbor2Neighbor:
    """Neighbor2Neighbor on crops of all of ``data.frames`` (the registry's builder)."""
    return Neighbor2Neighbor(data.frames, data.normaliser)
