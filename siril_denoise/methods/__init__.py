"""Self-supervised training methods and their registry.

:data:`METHODS` is the only list of method names: each maps to a
:class:`MethodSpec` with the method's label, whether it trains on one image
or on a session, its default network (+ options) and its training
:class:`Recipe`. The pipeline, the CLI, the Siril side and the benchmark read
it; nothing here imports torch until a method is built.

Adding a method takes one module and one entry:

1. ``methods/<name>.py``: the method class (below) and a function
   ``build(data: TrainingData)`` that makes it (the classes are imported from
   their modules, e.g. ``from siril_denoise.methods.n2n import Noise2Noise``:
   this package itself stays free of torch);
2. its :class:`MethodSpec` in :data:`METHODS` here.

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
  pixels, with gradient)``, from which the loop counts FLOPs;
- optionally ``metadata``: a dict stored in the model's training metadata.

The training loop (:mod:`siril_denoise.training`) is the same for all.

Recipes were chosen by measurement (docs/benchmark.md, "Training: recipe
sweep" and "Single image"). zsn2n: many steps on small crops beat fewer on
large ones at equal cost (2400 × 24² reach 47.6 dB where 600 × 64² reach
45.5 on the faint 512² sub), and 4 layers beat the paper's 2 by 1.2 dB.
n2n: a 2-level U-Net of width 32 on 2000 steps of 8 crops of 48², each target
the mean of 4 other frames, in bfloat16 on CPUs that compute it in hardware
(AMX or AVX-512 BF16: a step 3.9× faster with channels-last tensors). On the
faint 512² session at seed 0: 48.64 dB, where 1000 float32 steps gave
47.8-48.1 in 1.5× the time, 1000 bfloat16 steps 47.6 and 800 float32 steps of
64² 47.8 (47.0 with single targets); width 16, width 24, larger batches or
pixel-unshuffled variants lose 0.3-7 dB. On raw Bayer sessions averaged targets measured worse (33.1 dB
against 33.5 on the bench's Bayer session; 1.15× lower noise against 1.69×
in the tests' 96² session): half-pixel shifts of the packed planes make
warped stars inexact, so packed CFA frames keep one target each. Its crops
are at most 3/4 of the frame so that they fit in the overlap of dithered
frames.
"""

from __future__ import annotations

from ..errors import InputError
from .registry import MethodSpec, Recipe, TrainingData

#: Every method by name, in the order menus and tables list them.
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec(
        name="zsn2n", label="Zero-shot: ZS-N2N (trained on this image)", single_image=True,
        network="zsn2n", net_options={"depth": 4},
        recipe=Recipe(steps=2400, batch=8, crop=24, lr=1e-3, eval_interval=50, patience=20, val_batches=8),
    ),
    MethodSpec(
        name="nb2nb", label="Zero-shot: Neighbor2Neighbor (trained on this image)", single_image=True,
        network="unet", net_options={},
        recipe=Recipe(steps=1000, batch=8, crop=96, lr=5e-4, eval_interval=50, patience=20, val_batches=8),
    ),
    MethodSpec(
        name="n2n", label="Noise2Noise across the frames of a session (trained on registered subs)",
        single_image=False, network="unet", net_options={"levels": 2, "features": 32},
        recipe=Recipe(steps=2000, batch=8, crop=48, lr=1e-3, eval_interval=200, patience=15, val_batches=8, bf16=1.0),
        min_frames=2, crop_fraction=0.75, method_options={"targets": 4, "cfa_targets": 1},
    ),
    MethodSpec(
        name="n2v", label="Zero-shot: Noise2Void, blind-spot N2V2 (trained on this image)", single_image=True,
        network="n2v2", net_options={"levels": 2, "features": 32},
        recipe=Recipe(steps=600, batch=8, crop=64, lr=1e-3, eval_interval=50, patience=20, val_batches=8),
    ),
    MethodSpec(
        name="self2self",
        label="Zero-shot: Self2Self (trained on this image; slow: ~2x ZS-N2N's time, 10 network passes per pixel)",
        single_image=True, network="s2s", net_options={"levels": 2, "features": 32, "ensemble": 10},
        recipe=Recipe(steps=400, batch=8, crop=64, lr=1e-3, eval_interval=50, patience=20, val_batches=8),
    ),
)}


def method_spec(name: str) -> MethodSpec:
    """The spec of method ``name``; InputError naming the known methods otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.") from None


def single_image_methods() -> tuple[str, ...]:
    """Methods that train on the image they denoise (``denoise``; ``train`` accepts them too)."""
    return tuple(name for name, spec in METHODS.items() if spec.single_image)


def session_methods() -> tuple[str, ...]:
    """Methods that need a session of frames of one target (``train`` only)."""
    return tuple(name for name, spec in METHODS.items() if not spec.single_image)


def default_single_image_method(is_stack: bool | None, cfa: str | None) -> tuple[str, str]:
    """The single-image method trained when the user names none, and why (one sentence for the log).

    Chosen by measurement (docs/benchmark.md, "Single image: the default
    by kind of data"), at each method's default steps on a 2-core CPU:

    - a sub, mono or raw CFA (``is_stack`` False or None; ``cfa`` the Bayer
      pattern or None): ZS-N2N with a 4-layer net on 2400 steps of 24²
      crops. On the faint 512² sub (the bench's faint scene, frame 0) it
      reaches 47.6 dB stretched in ~100 s of one CPU thread, over Siril's
      NL-Bayes (46.2 dB; ``denoise -vst`` 47.3) and BM3D-GAT (47.1);
      Self2Self 47.0 dB in twice the time, NB2NB 46.6 dB in 8×, N2V 44.7.
      Its net costs 125 kFLOP a pixel at inference, the U-Nets 222.
    - a stack: Noise2Void. A registered stack's noise is correlated by the
      interpolation, and ZS-N2N learns to keep it: on a registered test
      stack (RGB 192², correlation 0.22) ZS-N2N lowered it 1.16× (44.8 dB
      stretched from 44.0), ZS-N2N on 2×2 pixel-shuffled sub-images
      (AP-BSN's down-sampling) did worse (42.8 dB), N2V 5.3× (50.2 dB, in
      ~4× ZS-N2N's time); BM3D 50.4 dB. The pipeline also measures the
      correlation (:func:`siril_denoise.pipeline.noise_correlation`) and
      points to N2V when another method meets such noise.
    """
    name = "zsn2n"
    if is_stack:
        name = "n2v"
        why = ("a stack: Noise2Void, the single-image method that removes the noise a registration leaves "
               "correlated between neighbouring pixels (5.3x on a test stack, where ZS-N2N kept it)")
    elif cfa:
        why = f"a raw {cfa} sub: ZS-N2N on the 4 packed CFA planes, the fastest single-image method at equal quality"
    else:
        why = "a single sub: ZS-N2N, the fastest single-image method at equal quality (docs/benchmark.md)"
    return name, why


__all__ = ["METHODS", "MethodSpec", "Recipe", "TrainingData", "method_spec", "single_image_methods",
           "default_single_image_method",
           "session_methods"]
