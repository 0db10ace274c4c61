"""Self2Self (Quan et al., CVPR 2020): Bernoulli-masked input, dropout, a dropout ensemble.

Each training sample is a crop y with a Bernoulli keep-mask b (a pixel is
dropped with probability ``drop``, the same for all its planes). The
network (:class:`siril_denoise.blindspot.Self2SelfNet`) sees only the kept
pixels, through partial convolutions, with dropout in its decoder, and the
loss is measured on the dropped pixels, against their noisy values:

    L = Σ_p (1 − b_p) · (f(b ⊙ z)_p − y_p)² / var_p  /  Σ_p (1 − b_p)

E[y_p | kept pixels] is the clean value, so the minimiser is a denoiser. At
inference the network averages, for each pixel, the predictions of the
ensemble members that dropped it (:class:`~siril_denoise.blindspot.
Self2SelfNet`): the exported model does this itself.

What changed from the seed's failed experiment (a 720 s uncalibrated sub,
loss oscillating between 16k and 77k after 5000 epochs, the image darkened
by 19 %):

- The network works in the GAT domain and the loss is variance-weighted in
  data units (:mod:`.domain`): every pixel carries about one unit of noise,
  so a crop with a bright star no longer weighs 10⁵ times one of sky, and
  the loss of a batch sits near 1 whatever the crops hold (the seed's ADU
  loss spread by 5× from batch to batch). Errors beyond 4σ count linearly.
- The output is a blind local mean of the kept neighbours plus a learnt
  correction: an untrained or badly trained network is a mild smoothing,
  never a flat, dark or shifted image (the seed's direct and residual
  networks darkened the image or moved its histogram).
- Inference masks the input exactly as training does, and each output
  pixel is an average of predictions made without it: no train/inference
  shift, no copy of the noisy pixel.
- Training is the project's loop: AdamW, warm-up then cosine learning rate,
  a held-out validation loss, the best weights kept, a divergence guard.
  :func:`review` turns what the loop saw into a flag and a plain message.

Like every blind-spot method it needs noise independent between
neighbouring pixels: not for registered (resampled) frames. It is slow: a
training step costs about what a zero-shot step costs, but inference runs
the network once per ensemble member (10 by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import numpy as np
import torch

from ..blindspot import ring_mean
from ..noise import Normaliser
from .crops import random_crops
from .domain import LinearDomain

if TYPE_CHECKING:
    from .registry import TrainingData

#: Input drop probability of a training sample.
DROP = 0.3


class Self2Self:
    """Self2Self on crops of one or more images (data units, ``(C, H, W)``).

    Args:
        images: float32 ``(C, H, W)`` arrays in data units.
        normaliser: maps data units to the network domain.
        drop: probability that a pixel is dropped from the input (0..1).
    """

    name = "self2self"
    #: forward passes per sample: (fraction of the crop's pixels, with gradient); for FLOP counts.
    #: A training pass is one ensemble member; the network's forward (counted by the loop) is 10 members.
    passes = ((0.1, True),)

    def __init__(self, images: list[np.ndarray], normaliser: Normaliser, drop: float = DROP) -> None:
        self.images = images
        self.domain = LinearDomain(normaliser)
        self.drop = float(drop)

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        y = random_crops(self.images, rng, crop, batch)
        keep = (rng.random((batch, 1, y.shape[2], y.shape[3])) >= self.drop).astype(np.float32)
        return self.domain.forward_np(y), y, keep

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self.sample(rng, crop, batch) for _ in range(n)]

    def predict(self, net: torch.nn.Module, z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """One masked prediction: ``net.member`` for a Self2Self network; any other network
        (the untouched-input reference, ``nn.Identity``) sees the dropped pixels filled
        with the mean of their kept neighbours, so the identity scores as that local mean."""
        member = getattr(net, "member", None)
        if member is not None:
            return member(z, keep)
        return net(keep * z + (1 - keep) * ring_mean(z, keep))

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        z, y, keep = batch
        return self.domain.loss(self.predict(net, z, keep), y, 1 - keep)

    def review(self, result) -> list[tuple[str, str]]:
        """Flags and messages on a finished run (:class:`~siril_denoise.training.TrainResult`); see :func:`review`."""
        return review(result.history, result.val_input, result.best_val)


#: Relative spread of the last held-out losses beyond which training counts as not settled.
UNSTEADY = 0.5


def review(history: list[dict], val_input: float, best_val: float) -> list[tuple[str, str]]:
    """Read a Self2Self run's validation curve; return ``(flag, message)`` pairs (empty when it settled).

    ``history`` rows as :class:`siril_denoise.training.TrainResult` keeps
    them (step, val_loss...); losses are the held-out scores, lower is
    better, ``val_input`` the untouched input's. Over the last third of the
    evaluations (at least 3), the flag ``"not_converged"`` is raised when

    - the held-out loss ended above the input's, or moved up and down by more
      than ``UNSTEADY`` times the best model's gain over the input: the
      seed's failure, a loss that oscillates instead of settling; or
    - it was still falling by that much: more steps would remove more noise.
    """
    vals = [h["val_loss"] for h in history[1:] if math.isfinite(h.get("val_loss", float("nan")))]
    if len(vals) < 3:
        return []
    gain = val_input - best_val
    tail = vals[-max(3, len(vals) // 3):]
    lo, hi = min(tail), max(tail)
    falling = all(b <= a for a, b in zip(tail, tail[1:]))
    if gain > 0 and tail[-1] <= val_input and hi - lo <= UNSTEADY * gain:
        return []
    if gain > 0 and falling and tail[-1] <= val_input:
        return [("not_converged",
                 f"Self2Self was still improving when training stopped (held-out loss {hi:.4g} -> {lo:.4g} over the "
                 f"last {len(tail)} evaluations; untouched input {val_input:.4g}): more training steps would remove "
                 "more noise.")]
    return [("not_converged",
             f"Self2Self did not converge: over the last {len(tail)} evaluations the held-out loss went up and down "
             f"between {lo:.4g} and {hi:.4g} (untouched input {val_input:.4g}, best {best_val:.4g}). The image is "
             "denoised with the best weights, which may remove little noise or leave artefacts. This happens on "
             "very faint, low-SNR images: use zsn2n or n2v, or Noise2Noise across the frames of a session (n2n).")]


def build(data: TrainingData) -> Self2Self:
    """Self2Self on crops of all of ``data.frames`` (the registry's builder)."""
    return Self2Self(data.frames, data.normaliser)
