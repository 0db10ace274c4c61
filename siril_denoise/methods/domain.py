"""The loss every method shares: network output back in data units, compared
with a *linear* target, weighted by the noise variance.

The network sees variance-stabilised input z = GAT(x) (or a linear
normalisation) and outputs a z-domain estimate. Its output is mapped back to
data units by the *algebraic* inverse of the transform and compared with the
target in data units:

    L = Σ m · (A⁻¹(f(z)) − t)² / var(A⁻¹(f(z)))  /  Σ m

- The minimiser is E[t | input] in data units — the clean signal when the
  target's noise is zero-mean and independent of the input's. No Jensen
  bias: transforming a noisy target (E[GAT(t)] ≠ GAT(E[t])) would darken
  faint sky and, where a network smooths across a star in the square-root
  domain, take flux away from its wings.
- Dividing by the model variance (a function of the prediction, so the
  minimiser is unchanged) gives every pixel about one unit of noise whatever
  its brightness: the same taming of the dynamic range as the GAT, without
  which a linear-domain loss is spent on the brightest stars (design.md).

At inference the output is mapped back with the same algebraic inverse
(``Normaliser.inverse(z, unbiased=False)``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..noise import _D0, _S0, Normaliser


#: Normalised error (in σ) beyond which the loss grows linearly.
HUBER = 4.0


def robust_square(e: torch.Tensor) -> torch.Tensor:
    """``e²`` for normalised errors ``|e| < HUBER`` (in σ), continued linearly beyond (Huber)."""
    e = e.abs()
    return torch.where(e < HUBER, e * e, 2 * HUBER * e - HUBER * HUBER)


class LinearDomain:
    """Torch helpers for one :class:`Normaliser` (constants cached per device)."""

    def __init__(self, norm: Normaliser) -> None:
        self.norm = norm
        self._consts: dict = {}

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (like.device, like.dtype)
        if key not in self._consts:
            n = self.norm
            self._consts[key] = tuple(
                torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=like.dtype, device=like.device)[None, :, None, None]
                for v in (n.a, n.c, n.offset, n.scale)
            )
        return self._consts[key]

    def to_linear(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output ``(N, C, h, w)`` → (data units, noise variance there)."""
        a, c, off, scale = self._tensors(z)
        if self.norm.transform == "gat":
            d = z + off
            # Both branches of noise.anscombe's inverse (linear below d0 = 2·sqrt(3/8)).
            y = torch.where(d >= _D0, d * d / 4 - 0.375, (d - _D0) * _S0)
            x = a * y - c / a
            var = a * x.detach() + c
            # Never weight a pixel more than 4× the sky (var at the sky level
            # x_sky is a·x_sky + c = a²·(off²/4 − 3/8)).
            var = torch.maximum(var, 0.25 * a * a * (off * off / 4 - 0.375))
        else:
            x = z * scale + off
            var = (scale * scale).expand_as(x)
        return x, var

    def loss(self, z_pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Variance-weighted squared error of a z-domain prediction against a linear target.

        Errors beyond ``HUBER`` standard deviations count linearly (Huber):
        a hot pixel or cosmic-ray hit in a target frame is thousands of σ
        away and would otherwise dominate the gradient. Within ±4 σ — all
        but 1 in 15 000 samples of Gaussian noise — the loss is the squared
        error, so the minimiser stays the mean.
        """
        x, var = self.to_linear(z_pred)
        err = robust_square((x - target) / torch.sqrt(var))
        if mask is None:
            return err.mean()
        return torch.sum(mask * err) / torch.clamp(torch.sum(mask) * err.shape[1], min=1.0)

    def forward_np(self, x: np.ndarray) -> np.ndarray:
        """Data units ``(N, C, h, w)`` → network domain (numpy, float32)."""
        return np.stack([self.norm.forward(b) for b in x])
