"""The one training loop, for every method.

In the spirit of nanoGPT's ``train.py``: every knob in :class:`TrainConfig`,
the learning rate from :func:`get_lr` (warm-up, then cosine decay to a
floor), a held-out validation loss every ``eval_interval`` steps, the best
weights kept, a divergence guard, a time budget, progress and cancel.

The schedule runs on *training progress*, the larger of ``step / max_steps``
and ``elapsed / time_budget``, so a run cut short by its time budget still
ends with a decayed learning rate instead of stopping at the peak.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import Cancelled, DenoiseError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training knobs. Times in seconds; ``crop`` in pixels of the working image."""

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
    time_budget: float | None = 60.0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    amp: bool = True  # mixed precision on CUDA
    max_lr_drops: int = 3  # divergence guard: restarts from the best weights


@dataclass
class TrainResult:
    """What a training run did. ``history`` rows: step, seconds, lr, train_loss, val_loss."""

    best_step: int
    best_val: float
    steps: int
    seconds: float
    stopped: str  # "max_steps", "time_budget", "early_stopping", "diverged"
    device: str
    history: list[dict] = field(default_factory=list)
    lr_drops: int = 0

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


def _to_device(batch, device) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(b)).to(device) for b in batch]


def train(
    net: torch.nn.Module,
    method,
    cfg: TrainConfig,
    *,
    progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``net`` in place with ``method``; on return it holds the best weights.

    Raises:
        Cancelled: when ``should_cancel()`` returns True (the network is
            left at its best weights so far, but the caller should discard it).
        DenoiseError: when the loss is not finite from the start.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    net.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_set = [_to_device(b, device) for b in method.validation(np.random.default_rng(cfg.seed + 1), cfg.crop, cfg.batch, cfg.val_batches)]

    score = getattr(method, "val_loss", method.loss)

    def estimate_val() -> float:
        net.eval()
        with torch.no_grad():
            losses = [float(score(net, b)) for b in val_set]
        net.train()
        return float(np.mean(losses))

    best_val = estimate_val()
    best_state = copy.deepcopy(net.state_dict())
    best_step, bad_evals, lr_scale, lr_drops = 0, 0, 1.0, 0
    history = [{"step": 0, "seconds": 0.0, "lr": 0.0, "train_loss": float("nan"), "val_loss": best_val}]
    if not math.isfinite(best_val):
        raise DenoiseError("The training loss is not finite on the first batch: the normalised data hold NaN or Inf.")
    t0 = time.perf_counter()
    running, n_running = 0.0, 0
    stopped = "max_steps"
    step = 0
    net.train()
    for step in range(1, cfg.max_steps + 1):
        if should_cancel is not None and should_cancel():
            net.load_state_dict(best_state)
            raise Cancelled()
        elapsed = time.perf_counter() - t0
        out_of_time = bool(cfg.time_budget) and elapsed >= cfg.time_budget
        frac = step / cfg.max_steps
        if cfg.time_budget:
            frac = max(frac, elapsed / cfg.time_budget)
        lr = get_lr(frac, cfg, step) * lr_scale
        for g in opt.param_groups:
            g["lr"] = lr
        batch = _to_device(method.sample(rng, cfg.crop, cfg.batch), device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss = method.loss(net, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        lv = float(loss.detach())
        # Divergence guard: a non-finite loss or one far above the best
        # validation loss restores the best weights at half the learning rate.
        if not math.isfinite(lv) or lv > 20.0 * max(best_val, 1e-12):
            lr_drops += 1
            lr_scale *= 0.5
            net.load_state_dict(best_state)
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
            val = estimate_val()
            seconds = time.perf_counter() - t0
            history.append(
                {"step": step, "seconds": round(seconds, 3), "lr": lr, "train_loss": running / max(n_running, 1), "val_loss": val}
            )
            running, n_running = 0.0, 0
            if val < best_val:
                best_val, best_step, bad_evals = val, step, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad_evals += 1
            if progress is not None:
                progress(min(frac, 1.0), f"step {step}: validation loss {val:.5g} (best {best_val:.5g} at {best_step})")
            if bad_evals >= cfg.patience:
                stopped = "early_stopping"
                break
        if out_of_time:
            stopped = "time_budget"
            break
    net.load_state_dict(best_state)
    net.eval()
    seconds = time.perf_counter() - t0
    log.info("Training stopped (%s) after %d steps in %.1f s; best validation loss %.5g at step %d.", stopped, step, seconds, best_val, best_step)
    return TrainResult(best_step, best_val, step, seconds, stopped, str(device), history, lr_drops)


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
