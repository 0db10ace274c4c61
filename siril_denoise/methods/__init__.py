"""Self-supervised training methods, one module each: pair sampler + loss.

A method object holds its training data and offers

- ``sample(rng, crop, batch) -> tuple[np.ndarray, ...]``: one training batch;
- ``validation(rng, crop, batch, n) -> list[tuple[np.ndarray, ...]]``: fixed
  held-out batches, drawn once;
- ``loss(net, batch) -> torch.Tensor``: the scalar loss of a batch (tensors
  already on the training device);
- optionally ``val_loss(net, batch)``: the held-out score, when the training
  loss is not one (it must be lowest for the best denoiser, and higher for
  the untouched input); ``loss`` otherwise;
- ``passes``: the forward passes of one sample, ``(fraction of the crop's
  pixels, with gradient)``, from which the loop counts FLOPs.

The training loop (:mod:`siril_denoise.training`) is the same for all.
"""

from .crops import random_crops
from .n2n import Noise2Noise
from .nb2nb import Neighbor2Neighbor
from .zsn2n import ZeroShotN2N

METHODS = {"zsn2n": ZeroShotN2N, "nb2nb": Neighbor2Neighbor, "n2n": Noise2Noise}
SINGLE_IMAGE_METHODS = ("zsn2n", "nb2nb")

__all__ = ["METHODS", "SINGLE_IMAGE_METHODS", "ZeroShotN2N", "Neighbor2Neighbor", "Noise2Noise", "random_crops"]
