"""The one training loop, for every method.

In the spirit of nanoGPT's ``train.py``: every knob in :class:`TrainConfig`,
the learning rate from :func:`get_lr` (warm-up, then cosine decay to a
floor), a held-out validation loss every ``eval_interval`` steps, the best
weights kept, a divergence guard, progress on every step and cancel.

Work is counted in **steps**, never in seconds: with the same seed, data and
thread count, a run gives the same weights on a quiet machine as on a busy
one. ``time_budget`` is only an optional cap; a run it stops is flagged as
cut short (:attr:`TrainResult.flags`), as is one whose held-out loss beats
the untouched input's by less than ``min_gain``.

Threads: the loop runs torch on a fixed number of intra-op threads
(:func:`default_threads`, half the logical CPUs). Measured on a 2-core CPU
with other work running (load ≈ 4), a U-Net step took 1.15 s on one thread
and 3.1 s on two: intra-op threads wait for each other at every operator
when one of them is descheduled, and AdamW's many small kernels went from
19 ms to 560 ms (see docs/benchmark.md).

While training, the loop measures what a step does: training pixels per
second and convolution FLOP/s as a share of this machine's measured float32
matmul rate (:func:`matmul_rate`), like nanoGPT's MFU.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import Cancelled, DenoiseError

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Intra-op threads for training: half the logical CPUs, at least 1 (1 on a 2-core machine)."""
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass
class TrainConfig:
    """Training knobs. Times in seconds; ``crop`` in pixels of the working image.

    ``time_budget`` (None: no cap) stops a run early, which then is flagged
    as cut short; ``min_gain`` is the least relative drop of the held-out
    loss below the untouched input's (``1 − best/input``, 0..1) for a model
    not to be flagged as removing little noise. ``threads`` (None:
    :func:`default_threads`) is fixed for the run, whatever the load.
    """

    max_steps: int = 2000
    batch: int = 8
    crop: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    eval_interval: int = 50
    val_batches: int = 4
    patience: int = 12  # evaluations without improvement before stopping early
    time_budget: float | None = None
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    amp: bool = True  # mixed precision on CUDA
    max_lr_drops: int = 3  # divergence guard: restarts from the best weights
    threads: int | None = None
    min_gain: float = 0.05
    bf16: float = 0.0  # CPU: the first fraction (0..1) of the steps under bfloat16 autocast; see cpu_has_bf16
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none); see _Ema


@dataclass
class TrainResult:
    """What a training run did. ``history`` rows: step, seconds, lr, train_loss, val_loss.

    ``best_step`` and ``best_val`` are the step whose weights the run kept
    and their held-out loss: the final weights of a run that finished its
    schedule unless they give back much of the best evaluation's gain
    (:func:`keeps_final`), else the best evaluation's.
    ``val_input`` is the held-out loss of the untouched input (the identity),
    ``gain`` = ``1 − best_val/val_input``. ``flags`` name what went wrong
    (``"cut_short"``, ``"little_gain"``, ``"diverged"``; empty when all is
    well) and ``notes`` say it in plain words, with what to do instead.
    Throughput: ``steps_per_s``, ``pixels_per_s`` (training crop pixels),
    ``gflops`` (convolution GFLOP/s) and ``mfu`` (that over the measured
    matmul rate, 0..1); ``profile`` the seconds spent drawing batches, in
    forward+backward+update, and in validation.
    """

    best_step: int
    best_val: float
    steps: int
    seconds: float
    stopped: str  # "max_steps", "time_budget", "early_stopping", "diverged"
    device: str
    history: list[dict] = field(default_factory=list)
    lr_drops: int = 0
    max_steps: int = 0
    val_input: float = float("nan")
    gain: float = float("nan")
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    threads: int = 1
    seed: int = 0
    steps_per_s: float = 0.0
    pixels_per_s: float = 0.0
    gflops: float = 0.0
    mfu: float = 0.0
    profile: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("history")
        return d


def pick_device(name: str = "auto") -> torch.device:
    """The training device: CUDA, then Apple MPS, then CPU for ``"auto"``."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_lr(progress: float, cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine to ``lr·min_lr_ratio`` at progress 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (1.0 + math.cos(math.pi * p)) * (cfg.lr - floor)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX-512 BF16).

    Only there does :attr:`TrainConfig.bf16` apply: elsewhere bfloat16 is
    emulated and slower than float32, so training stays in float32 (same
    results on the same machine either way; a model trained partly in
    bfloat16 differs slightly from one trained in float32).
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except Exception:  # private helpers: a torch without them trains in float32
        return False


def _to_device(batch, device, fmt: torch.memory_format = torch.contiguous_format) -> list[torch.Tensor]:
    out = [torch.from_numpy(np.ascontiguousarray(b)).to(device) for b in batch]
    return [t.contiguous(memory_format=fmt) if t.ndim == 4 else t for t in out]


@functools.lru_cache(maxsize=8)
def matmul_rate(threads: int, n: int = 512, seconds: float = 0.1) -> float:
    """This machine's float32 matmul rate on ``threads`` torch threads, in GFLOP/s.

    The reference for the share of the machine a training step uses (as
    nanoGPT's MFU uses the GPU's peak): ``n``×``n`` products repeated for
    about ``seconds``. Measured once per process and thread count.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        return 2.0 * n**3 * reps / dt / 1e9
    finally:
        torch.set_num_threads(prev)


def step_flops(net: torch.nn.Module, method, channels: int, crop: int, batch: int) -> float:
    """Convolution FLOPs of one training step: forward passes × 3 with gradient, × 1 without.

    ``method.passes`` lists ``(fraction of the crop's pixels, with gradient)``
    per forward pass (default: one full-crop pass with gradient).
    """
    from .networks import forward_flops_per_pixel

    per_px = forward_flops_per_pixel(net, channels)
    passes = getattr(method, "passes", ((1.0, True),))
    return batch * crop * crop * per_px * sum(f * (3.0 if grad else 1.0) for f, grad in passes)


class _Ema:
    """Exponential moving average of a network's weights (Polyak averaging).

    With noisy self-supervised targets each step's gradient is noisy, and
    the average of the recent weights denoises better than the last ones.
    The decay ramps up as ``min(decay, (1 + step) / (10 + step))`` so the
    random initial weights are forgotten within the first tens of steps.
    Validation, the best checkpoint and the saved model use the average.
    Written by hand (a few lines): torch's ``AveragedModel`` has no ramp.
    """

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for avg, p in zip(self.model.state_dict().values(), net.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(p, 1.0 - d)
            else:
                avg.copy_(p)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _notes(result: "TrainResult", cfg: TrainConfig) -> None:
    """Fill ``result.flags`` and ``result.notes`` (plain words, what to do instead)."""
    if result.stopped == "diverged":
        result.flags.append("diverged")
        result.notes.append(
            f"Training diverged {result.lr_drops} times and was stopped at step {result.steps}; the model keeps "
            f"the best weights (step {result.best_step}). Train again with a lower learning rate or check the "
            "frames for NaN, saturated or very uneven data.")
    if result.stopped == "time_budget":
        result.flags.append("cut_short")
        result.notes.append(
            f"The time limit stopped training after {result.steps} of {result.max_steps} steps "
            f"({result.steps / max(result.max_steps, 1):.0%}): the model is not fully trained and removes less "
            "noise than it would. Train again without a time limit (the steps finish the same however busy the "
            "machine is), or with fewer steps on purpose.")
    if not (result.gain >= cfg.min_gain):
        result.flags.append("little_gain")
        result.notes.append(
            f"On held-out data the model's loss is only {max(result.gain, 0.0):.1%} below the untouched input's "
            f"(at least {cfg.min_gain:.0%} expected): it removes little noise. Train for more steps, or use "
            "another method: Noise2Noise across the frames of a session (n2n) for registered frames, or a "
            "classical denoiser.")


def train(
    net: torch.nn.Module,
    method,
    cfg: TrainConfig,
    *,
    progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    after: Callable[[float], float] | None = None,
) -> TrainResult:
    """Train ``net`` in place with ``method``; on return it holds the best weights.

    ``progress(fraction, message)`` is called after every step (fraction of
    the steps, or of the time cap when that is further along; the message
    has the step, losses, throughput and the time left). ``after(gflops)``,
    when given, estimates the seconds of the work that follows training
    (export, inference) from the convolution GFLOP/s the steps reach; the
    time left then includes it.

    Raises:
        Cancelled: when ``should_cancel()`` returns True (the network is
            left at its best weights so far, but the caller should discard it).
        DenoiseError: when the loss is not finite from the start.
    """
    threads = int(cfg.threads or default_threads())
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(net, method, cfg, threads, progress, should_cancel, after)
    finally:
        torch.set_num_threads(prev_threads)


def _train(net, method, cfg: TrainConfig, threads: int, progress, should_cancel, after) -> TrainResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    # On the CPU, oneDNN's convolutions run 10-15 % faster on channels-last
    # tensors (docs/benchmark.md); the weights go back to the usual layout at the end.
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    net.to(device, memory_format=fmt)
    use_amp = cfg.amp and device.type == "cuda"
    bf16_steps = int(round(float(cfg.bf16) * cfg.max_steps)) if device.type == "cpu" and cpu_has_bf16() else 0
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    t_val = time.perf_counter()
    val_set = [_to_device(b, device, fmt) for b in method.validation(np.random.default_rng(cfg.seed + 1), cfg.crop, cfg.batch, cfg.val_batches)]

    score = getattr(method, "val_loss", method.loss)

    def estimate_val(model: torch.nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            losses = [float(score(model, b)) for b in val_set]
        model.train()
        return float(np.mean(losses))

    val_input = estimate_val(torch.nn.Identity())
    ema = _Ema(net, cfg.ema) if cfg.ema > 0 else None
    evaluated = net if ema is None else ema.model  # what validation scores and the run returns
    best_val = estimate_val(evaluated)
    best_state = copy.deepcopy(evaluated.state_dict())
    best_step, bad_evals, lr_scale, lr_drops = 0, 0, 1.0, 0
    history = [{"step": 0, "seconds": 0.0, "lr": 0.0, "train_loss": float("nan"), "val_loss": best_val}]
    if not math.isfinite(best_val):
        raise DenoiseError("The training loss is not finite on the first batch: the normalised data hold NaN or Inf.")
    channels = int(val_set[0][0].shape[1])
    crop_px = cfg.batch * cfg.crop * cfg.crop
    flops = step_flops(net, method, channels, cfg.crop, cfg.batch) if device.type == "cpu" else 0.0
    peak = matmul_rate(threads) if device.type == "cpu" else float("nan")
    prof = {"data": 0.0, "step": 0.0, "validation": time.perf_counter() - t_val}
    t0 = time.perf_counter()
    running, n_running = 0.0, 0
    stopped = "max_steps"
    step = 0
    step_time = None  # running mean of one step's seconds (data + compute), for the ETA
    net.train()
    for step in range(1, cfg.max_steps + 1):
        if should_cancel is not None and should_cancel():
            net.load_state_dict(best_state)
            raise Cancelled()
        t_step = time.perf_counter()
        elapsed = t_step - t0
        out_of_time = bool(cfg.time_budget) and elapsed >= cfg.time_budget
        frac = step / cfg.max_steps
        if cfg.time_budget:
            frac = max(frac, elapsed / cfg.time_budget)
        lr = get_lr(frac, cfg, step) * lr_scale
        for g in opt.param_groups:
            g["lr"] = lr
        batch = _to_device(method.sample(rng, cfg.crop, cfg.batch), device, fmt)
        t_data = time.perf_counter()
        cpu_bf16 = step <= bf16_steps
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16 if cpu_bf16 else torch.float16,
                            enabled=use_amp or cpu_bf16):
            loss = method.loss(net, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        if cfg.grad_clip > 0:  # 0: no clipping (clip_grad_norm_ at 0 would zero every gradient)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update(net, step)
        lv = float(loss.detach())
        t_done = time.perf_counter()
        prof["data"] += t_data - t_step
        prof["step"] += t_done - t_data
        dt = t_done - t_step
        step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
        # Divergence guard: a non-finite loss or one far above the best
        # validation loss restores the best weights at half the learning rate.
        if not math.isfinite(lv) or lv > 20.0 * max(best_val, 1e-12):
            lr_drops += 1
            lr_scale *= 0.5
            net.load_state_dict(best_state)
            if ema is not None:
                ema.model.load_state_dict(best_state)
            opt = torch.optim.AdamW(net.parameters(), lr=lr * 0.5, weight_decay=cfg.weight_decay)
            log.warning("Training diverged at step %d (loss %.4g): restored the best weights, learning rate halved.", step, lv)
            if lr_drops > cfg.max_lr_drops:
                stopped = "diverged"
                break
            continue
        running += lv
        n_running += 1
        last = step == cfg.max_steps or out_of_time
        if step % cfg.eval_interval == 0 or last:
            t_val = time.perf_counter()
            val = estimate_val(evaluated)
            prof["validation"] += time.perf_counter() - t_val
            seconds = time.perf_counter() - t0
            history.append(
                {"step": step, "seconds": round(seconds, 3), "lr": lr, "train_loss": running / max(n_running, 1), "val_loss": val}
            )
            running, n_running = 0.0, 0
            if val < best_val:
                best_val, best_step, bad_evals = val, step, 0
                best_state = copy.deepcopy(evaluated.state_dict())
            else:
                bad_evals += 1
            busy = prof["data"] + prof["step"]
            log.info("step %d/%d: train loss %.5g, held-out %.5g (input %.5g, best %.5g at %d); %.0f ms/step, "
                     "%.3g Mpx/s, %.3g GFLOP/s = %.0f%% of the %.0f GFLOP/s matmul rate (%d threads)",
                     step, cfg.max_steps, history[-1]["train_loss"], val, val_input, best_val, best_step,
                     1e3 * busy / step, crop_px * step / busy / 1e6, flops * step / busy / 1e9,
                     100 * flops * step / busy / 1e9 / peak if peak == peak else float("nan"), peak, threads)
            if bad_evals >= cfg.patience:
                stopped = "early_stopping"
                if progress is not None:
                    progress(1.0, f"step {step}: held-out loss stopped improving (best at step {best_step})")
                break
        if progress is not None:
            left = (cfg.max_steps - step) * step_time
            left += (cfg.max_steps - step) / cfg.eval_interval * prof["validation"] / max(len(history), 1)
            if cfg.time_budget:
                left = min(left, max(cfg.time_budget - (time.perf_counter() - t0), 0.0))
            if after is not None and flops:
                left += after(flops / step_time / 1e9)
            progress(min(frac, 1.0), f"step {step}/{cfg.max_steps}, ~{_duration(left)} left: loss {lv:.3g}, "
                     f"held-out {best_val:.4g} (input {val_input:.4g}), {1.0 / step_time:.1f} steps/s, "
                     f"{crop_px / step_time / 1e6:.2g} Mpx/s")
        if out_of_time:
            stopped = "time_budget"
            break
    last_val = history[-1]["val_loss"]
    if stopped in ("max_steps", "time_budget") and step > best_step and history[-1]["step"] == step \
            and keeps_final(last_val, best_val, val_input):
        best_step, best_val = step, last_val
        best_state = evaluated.state_dict()
    net.load_state_dict(best_state)
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    seconds = time.perf_counter() - t0
    busy = max(prof["data"] + prof["step"], 1e-9)
    gflops = flops * step / busy / 1e9
    result = TrainResult(best_step, best_val, step, seconds, stopped, str(device), history, lr_drops,
                         max_steps=cfg.max_steps, val_input=val_input,
                         gain=1.0 - best_val / val_input if val_input > 0 else float("nan"), threads=threads,
                         seed=cfg.seed, steps_per_s=step / busy, pixels_per_s=crop_px * step / busy, gflops=gflops,
                         mfu=gflops / peak if peak == peak and peak > 0 else float("nan"),
                         profile={k: round(v, 3) for k, v in prof.items()})
    _notes(result, cfg)
    # A method may read its own run (e.g. Self2Self's convergence): review(result) -> [(flag, note)].
    for flag, note in getattr(method, "review", lambda r: [])(result):
        result.flags.append(flag)
        result.notes.append(note)
    log.info("Training stopped (%s) after %d steps in %.1f s; kept the weights of step %d, held-out loss %.5g (input %.5g, "
             "gain %.1f%%); %.2f steps/s, %.3g Mpx/s, %.0f%% of the matmul rate; time in batches %.1f s, "
             "forward+backward+update %.1f s, validation %.1f s.", stopped, step, seconds, best_step, best_val,
             val_input, 100 * result.gain, result.steps_per_s, result.pixels_per_s / 1e6, 100 * result.mfu,
             prof["data"], prof["step"], prof["validation"])
    for note in result.notes:
        log.warning(note)
    return result


def keeps_final(last: float, best: float, untouched: float, give_back: float = 0.25) -> bool:
    """Whether a run that finished its schedule keeps its final weights rather than its best checkpoint.

    ``last``, ``best`` and ``untouched`` are held-out losses of the final
    weights, the best evaluation and the untouched input. The final weights
    stay unless they give back more than ``give_back`` (0..1) of the best
    checkpoint's gain over the input; with no gain at all, the best
    checkpoint (often the starting weights) stays. The held-out targets are noisy frames,
    so the lowest of many evaluations is partly luck: on the bench's faint
    512² session the held-out loss of Noise2Noise wanders by ±10 % between
    evaluations in the last half of the run, and picking its minimum kept
    step 700 of 800 (47.27 dB) where the final weights, at the end of the
    learning-rate decay, scored 47.85 dB (docs/benchmark.md).
    """
    gain = untouched - best
    return gain > 0 and last - best <= give_back * gain


def save_history(history: list[dict], csv_path, png_path=None) -> None:
    """Write the validation curve as CSV and, when matplotlib is there, a PNG plot."""
    import csv

    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "seconds", "lr", "train_loss", "val_loss"])
        w.writeheader()
        w.writerows(history)
    if png_path is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no training-curve plot.")
        return
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps[1:], [h["train_loss"] for h in history[1:]], label="training")
    ax.plot(steps, [h["val_loss"] for h in history], label="validation (held out)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
