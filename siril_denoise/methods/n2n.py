"""Noise2Noise across the frames of a session (Lehtinen et al., ICML 2018).

Frames of one target taken minutes apart share the sky and carry
independent noise. With x_i the input frame and t_j another frame warped
into x_i's geometry and photometrically matched to it (see
:mod:`siril_denoise.pairs`), E[t_j | x_i] is the clean signal, so
minimising E‖f(x_i) − t_j‖² trains f towards the clean image without ever
seeing it.

Dynamic range is tamed without biasing the target: the network works in the
variance-stabilised domain (input z_i = GAT(x_i)), its output is mapped back
to data units by the algebraic inverse of the transform, and the loss is the
squared error against the *linear* target weighted by the model variance at
the prediction,

    L = Σ m · (A⁻¹(f(z_i)) − t_j)² / var(A⁻¹(f(z_i)))  /  Σ m

with m the mask of pixels valid in both frames. Because the weight depends
on the input only, the minimiser is still E[t_j | x_i]: no Jensen bias from
transforming a noisy (and interpolated) target, and each pixel contributes
about one unit of noise whatever its brightness — the same taming the GAT
gives (design.md: a linear-domain loss spent itself on bright stars).
"""

from __future__ import annotations

import numpy as np
import torch

from ..noise import Normaliser


class Noise2Noise:
    """N2N on pairs of session frames.

    Args:
        train_sampler, val_sampler: objects with ``sample(rng, crop, batch)
            -> (inp, tgt, mask)`` in data units, float32 (batch, C, crop, crop)
            (:class:`siril_denoise.pairs.PairSampler`); the validation sampler
            draws inputs from frames never used for training.
        normaliser: maps data units to the network domain.
    """

    name = "n2n"
    inverse = "algebraic"

    def __init__(self, train_sampler, val_sampler, normaliser: Normaliser) -> None:
        self.train_sampler = train_sampler
        self.val_sampler = val_sampler
        self.norm = normaliser
        self._consts: dict = {}

    def _prepare(self, inp: np.ndarray, tgt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        z = np.stack([self.norm.forward(x) for x in inp])
        return z, tgt.astype(np.float32), mask.astype(np.float32)

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        return self._prepare(*self.train_sampler.sample(rng, crop, batch))

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self._prepare(*self.val_sampler.sample(rng, crop, batch)) for _ in range(n)]

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
        """Network output → (data units, noise variance there), differentiably."""
        a, c, off, scale = self._tensors(z)
        if self.norm.transform == "gat":
            d = z + off
            x = a * (d * d / 4 - 0.375) - c / a
            var = a * x.detach() + c
            # Never weight a pixel more than 4x the sky's weight (var at the
            # sky level x_sky is a·x_sky + c = a²·(off²/4 − 3/8)).
            sky_var = a * a * (off * off / 4 - 0.375)
            var = torch.maximum(var, 0.25 * sky_var)
        else:
            x = z * scale + off
            var = (scale * scale).expand_as(x)
        return x, var

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        z, t, m = batch
        x, var = self.to_linear(net(z))
        return torch.sum(m * (x - t) ** 2 / var) / torch.clamp(torch.sum(m), min=1.0)
