"""The method registry's types: a training :class:`Recipe` and a :class:`MethodSpec` per method.

A spec holds everything the pipeline needs to know about a method: its name
and label, whether it trains on one image or on a session, its default
network and that network's options, and its training recipe;
:meth:`MethodSpec.build` makes the method object (sampler + loss) from
:class:`TrainingData` with the ``build`` function of ``methods/<name>.py``.

Nothing here imports torch, so menus and option lists can read the
registry in processes that never train.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from ..noise import Normaliser
    from ..training import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A method's default training recipe; work is counted in steps, never in seconds.

    Attributes:
        steps: training steps (optimizer updates), ≥ 1.
        batch: crops per step.
        crop: side of a training crop in pixels of the working image (even;
            the pipeline shrinks it to fit small images).
        lr: peak learning rate of AdamW (after warm-up, before cosine decay).
        eval_interval: steps between two held-out validations.
        patience: validations without improvement before stopping early.
        val_batches: held-out batches per validation (fixed, drawn once).
        grad_clip: largest gradient norm (0: no clipping).
        bf16: the first fraction (0..1) of the steps under bfloat16 autocast
            on CPUs that compute bfloat16 in hardware (float32 elsewhere and
            on GPUs, which use their own mixed precision).
    """

    steps: int
    batch: int
    crop: int
    lr: float
    eval_interval: int
    patience: int
    val_batches: int
    grad_clip: float = 1.0
    bf16: float = 0.0

    def train_config(self, overrides: dict | None = None, *, max_steps: int | None = None, **run) -> TrainConfig:
        """The :class:`~siril_denoise.training.TrainConfig` of one run.

        Args:
            overrides: :class:`TrainConfig` fields that replace the recipe's
                (experiments such as the benchmark's sweep); a
                ``net_options`` or ``method_options`` key is ignored here
                (they are the network's and the method's).
            max_steps: the run's steps instead of the recipe's; validation
                then happens at least 5 times and warm-up takes at most a
                tenth of the run.
            run: the run's other fields (``seed``, ``device``, ``threads``,
                ``time_budget``).
        """
        from ..training import TrainConfig

        knobs = asdict(self)
        knobs["max_steps"] = knobs.pop("steps")
        knobs.update({k: v for k, v in (overrides or {}).items() if k not in ("net_options", "method_options")})
        cfg = TrainConfig(**knobs)
        for key, value in run.items():
            setattr(cfg, key, value)
        if max_steps:
            cfg.max_steps = int(max_steps)
            cfg.eval_interval = max(5, min(cfg.eval_interval, cfg.max_steps // 5))
            cfg.warmup_steps = min(cfg.warmup_steps, max(1, cfg.max_steps // 10))
        return cfg


@dataclass
class TrainingData:
    """What a method is built from, prepared by the pipeline.

    Attributes:
        frames: float32 ``(C, H, W)`` images in data units (the working
            layout: mono C=1, RGB C=3, Bayer packed into C=4), same shape.
        normaliser: maps data units to the network domain.
        homographies: session methods only: one 3×3 per frame mapping its
            working-layout pixel coordinates onto the reference frame's.
        validation_frame: session methods: the frame held out for validation
            (None: the last one).
        should_cancel: polled during long preparations.
        options: the method's own options (:attr:`MethodSpec.method_options`
            with the run's overrides), e.g. n2n's ``targets``.
        cfa: the Bayer pattern when ``frames`` are packed raw CFA planes,
            else None.
    """

    frames: list[np.ndarray]
    normaliser: Normaliser
    homographies: list[np.ndarray] | None = None
    validation_frame: int | None = None
    should_cancel: Callable[[], bool] | None = None
    options: dict = field(default_factory=dict)
    cfa: str | None = None


@dataclass(frozen=True)
class MethodSpec:
    """One self-supervised method, as the pipeline, the CLI and the Siril side see it.

    Attributes:
        name: the name in options, menus and model metadata (``"n2n"``...).
        label: one line for menus and help.
        single_image: True when the method trains on the image it denoises;
            False when it needs a session of frames of one target.
        network: the default network, a key of
            :data:`siril_denoise.networks.NETWORKS`.
        net_options: keyword arguments of the default network (``levels``,
            ``features``...); not applied to another network.
        recipe: the default training recipe.
        min_frames: the fewest frames ``build`` accepts.
        method_options: keyword options of the method's ``build`` (read
            from :attr:`TrainingData.options`), e.g. n2n's ``targets``.
        crop_fraction: the training crop is at most this fraction of the
            frames' smaller side (0..1; below 1 when crops must fit in the
            overlap of dithered frames).
    """

    name: str
    label: str
    single_image: bool
    network: str
    net_options: dict
    recipe: Recipe
    min_frames: int = 1
    crop_fraction: float = 1.0
    method_options: dict = field(default_factory=dict)

    def build(self, data: TrainingData) -> Any:
        """The method object (sampler + loss, see :mod:`siril_denoise.methods`) for ``data``.

        Calls ``build(data)`` of the module ``siril_denoise.methods.<name>``
        (imported here, with torch, on first use).
        """
        return importlib.import_module(f"{__package__}.{self.name}").build(data)
