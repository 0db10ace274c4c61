"""Noise2Noise across the frames of a session (Lehtinen et al., ICML 2018).

Frames of one target taken minutes apart share the sky and carry
independent noise. With x_i the input frame and t_j another frame warped
into x_i's geometry and photometrically matched to it (see
:mod:`siril_denoise.pairs`), E[t_j | x_i] is the clean signal, so
minimising E‖f(x_i) − t_j‖² trains f towards the clean image without ever
seeing it:

    L = Σ m · (f(x_i) − t_j)² / var  /  Σ m

with m the mask of pixels valid in both frames, errors in data units and
variance-weighted (:mod:`.domain`). The target is never transformed, so
its interpolation (which lowers and correlates its noise) adds no bias.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..noise import Normaliser
from ..pairs import PairSampler
from .domain import LinearDomain
from .registry import TrainingData

log = logging.getLogger(__name__)


class Noise2Noise:
    """N2N on pairs of session frames.

    Args:
        train_sampler, val_sampler: objects with ``sample(rng, crop, batch)
            -> (inp, tgt, mask)`` in data units, float32 (batch, C, crop, crop)
            (:class:`siril_denoise.pairs.PairSampler`); the validation sampler
            draws pairs that involve a frame never used for training.
        normaliser: maps data units to the network domain.
        targets: frames averaged into each training target (1: plain pairs);
            validation always scores against single frames.
    """

    #: forward passes per sample: (fraction of the crop's pixels, with gradient); for FLOP counts
    passes = ((1.0, True),)

    def __init__(self, train_sampler, val_sampler, normaliser: Normaliser, *, targets: int = 1) -> None:
        self.train_sampler = train_sampler
        self.targets = int(targets)
        self.val_sampler = val_sampler
        self.domain = LinearDomain(normaliser)
        self.metadata: dict = {}  # stored with the model's training metadata

    def _prepare(self, inp: np.ndarray, tgt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.domain.forward_np(inp), tgt.astype(np.float32), mask.astype(np.float32)

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        return self._prepare(*self.train_sampler.sample(rng, crop, batch, targets=self.targets))

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self._prepare(*self.val_sampler.sample(rng, crop, batch)) for _ in range(n)]

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        z, t, m = batch
        return self.domain.loss(net(z), t, m)


def build(data: TrainingData) -> Noise2Noise:
    """N2N on ``data.frames``, one frame held out for validation when there are 3 or more.

    The held-out frame (``data.validation_frame``, default the last) is
    never a training input or target; validation pairs it with the last
    training frame, one target per input, whatever training uses.
    Training targets combine ``targets`` frames (``data.options``; for
    packed raw CFA frames ``cfa_targets``: single frames measured better
    there, see the registry). Validating the held-out frame against means of
    training frames was tried and picked early, blurrier checkpoints (best
    at step 200-300 of 500-1600, 1 dB lower; on the tests' 96² raw Bayer
    session never past step 0): interpolated targets weigh most at stars,
    where a sharper output scores worse. With 2 frames validation uses the training
    pairs. The object's ``metadata`` (the held-out frame, pair statistics)
    goes into the model's training metadata.
    """
    frames, n = data.frames, len(data.frames)
    if n >= 3:
        val = n - 1 if data.validation_frame is None else int(data.validation_frame)
        train_idx = [k for k in range(n) if k != val]
        val_idx = [val, train_idx[-1]]
    else:
        log.warning("Only 2 frames: no frame can be held out, validation uses the training pairs.")
        val, train_idx, val_idx = None, [0, 1], [0, 1]
    tr = PairSampler(frames, data.homographies, indices=train_idx, should_cancel=data.should_cancel)
    va = PairSampler(frames, data.homographies, indices=val_idx, should_cancel=data.should_cancel)
    targets = int(data.options.get("cfa_targets" if data.cfa else "targets", 1))
    method = Noise2Noise(tr, va, data.normaliser, targets=targets)
    method.metadata = {"validation_frame": val, "pairs": tr.pair_stats()}
    return method

