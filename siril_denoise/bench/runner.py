"""Run every method on one scene and score it: the rows of one table.

Learned methods go through the engine's public entry points exactly as a
user's data would: ``zsn2n`` and ``nb2nb`` through
:func:`siril_denoise.pipeline.denoise_image` on frame 0; ``n2n`` through
:func:`siril_denoise.pipeline.train_on_frames` on the whole session (with its
known homographies) and then :func:`siril_denoise.pipeline.apply_model` on
frame 0. Baselines run on the same frame in the working layout
(:mod:`siril_denoise.bench.baselines`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from typing import Callable

import numpy as np

from siril_denoise.layout import to_working
from siril_denoise.methods import METHODS as LEARNED_SPECS

from .baselines import BASELINES, default_baselines, mean_of_frames
from .metrics import StarSet, score
from .scenes import BenchScene
from .siril_baseline import SIRIL_BASELINES, NotApplicable, siril_label

log = logging.getLogger("siril_denoise.bench")

LEARNED = tuple(LEARNED_SPECS)
METHODS = LEARNED + tuple(BASELINES) + ("mean",)

LABELS = {
    "input": "noisy input",
    **{name: spec.label for name, spec in LEARNED_SPECS.items()},
    "bm3d": "BM3D + GAT",
    "nlm": "NL-means (skimage)",
    "wavelet": "wavelet BayesShrink",
    "gaussian": "Gaussian σ=1 px",
    "siril-nlbayes": "Siril 1.4.4 denoise (NL-Bayes)",
    "siril-nlbayes-vst": "Siril 1.4.4 denoise -vst",
    "mean": "mean of N frames",
}


def default_methods() -> tuple[str, ...]:
    """What a bench run scores unless told: every method, the Siril rows only where ``siril-cli`` is installed."""
    return LEARNED + default_baselines() + ("mean",)


def label_of(method: str) -> str:
    """The row label of ``method``; Siril's rows name the installed version (``siril-cli --version``)."""
    if method in SIRIL_BASELINES:
        return siril_label(vst=method.endswith("-vst"))
    return LABELS.get(method, method)


class PeakRSS:
    """Context manager sampling this process's resident memory every ``interval`` s.

    ``peak_mb`` is the highest RSS seen minus the RSS at entry (MB): the
    extra memory the enclosed work needed, libraries already loaded.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakRSS":
        import psutil

        self._proc = psutil.Process()
        self._start = self._proc.memory_info().rss
        self._peak = self._start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._start) / 2**20


def measured(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn()``; return ``(result, wall seconds, peak extra RSS in MB)``."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return result, seconds, mem.peak_mb


def run_learned(method: str, frames: list[np.ndarray], cfa: str | None, homographies, *,
                time_budget: float | None = None, seed: int = 0, steps: int | None = None) -> tuple[np.ndarray, dict]:
    """Denoise ``frames[0]`` with a learned method; returns (Siril-layout result, training summary)."""
    from siril_denoise import pipeline

    if LEARNED_SPECS[method].single_image:
        r = pipeline.denoise_image(frames[0], method=method, cfa_pattern=cfa, time_budget=time_budget, seed=seed,
                                   max_steps=steps)
        return r.data, dict(r.model_metadata.get("training", {}))
    with tempfile.TemporaryDirectory(prefix="siril-denoise-bench-") as tmp:
        tm = pipeline.train_on_frames(frames, homographies=homographies, cfa_pattern=cfa, method=method,
                                      time_budget=time_budget, seed=seed, max_steps=steps, out_dir=tmp)
        r = pipeline.apply_model(frames[0], tm.onnx_path, cfa_pattern=cfa)
        return r.data, dict(tm.metadata.get("training", {}))


def denoise(method: str, scene: BenchScene, *, time_budget: float | None = None, seed: int = 0,
            steps: int | None = None) -> tuple[np.ndarray | None, dict]:
    """One method on one scene: (working-layout result or None when not applicable, extra info)."""
    cfa = scene.cfa_pattern
    if method in LEARNED:
        if not LEARNED_SPECS[method].single_image and len(scene.frames) < 3:
            return None, {"note": "n/a: needs a session of ≥ 3 frames"}
        out, training = run_learned(method, scene.frames, cfa, scene.homographies, time_budget=time_budget,
                                    seed=seed, steps=steps)
        return to_working(out, cfa)[0], {"training": training}
    work = to_working(scene.noisy, cfa)[0]
    if method == "mean":
        if len(scene.frames) < 2:
            return None, {"note": "n/a: a single image"}
        from siril_denoise.pairs import full_to_packed_homography

        homs = scene.homographies
        if cfa:
            homs = np.stack([full_to_packed_homography(h) for h in homs])
        works = [to_working(f, cfa)[0] for f in scene.frames]
        return mean_of_frames(works, homs), {}
    try:
        return BASELINES[method](work, cfa is not None), {}
    except NotApplicable as exc:
        return None, {"note": f"n/a: {exc}"}


def run_scene(scene: BenchScene, methods: list[str], *, time_budget: float | None = None, seed: int = 0,
              steps: int | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Score the noisy input and every method on ``scene``; one dict per row."""
    cfa = scene.cfa_pattern
    noisy = to_working(scene.noisy, cfa)[0]
    truth = to_working(scene.truth, cfa)[0]
    stars = StarSet(truth, noisy, scene.star_x, scene.star_y, scene.fwhm, scene.saturation, packed=cfa is not None)
    common = dict(saturation=scene.saturation, data_range=scene.data_range)
    rows = [dict(method="input", label=LABELS["input"], **score(noisy, truth, noisy, stars, **common))]
    for m in methods:
        if progress:
            progress(f"{scene.name}: {m}")
        try:
            (out, info), seconds, peak = measured(lambda: denoise(m, scene, time_budget=time_budget, seed=seed,
                                                                  steps=steps))
        except Exception as exc:  # one failing method must not lose the others' rows
            log.exception("%s failed on %s", m, scene.name)
            rows.append(dict(method=m, label=label_of(m), note=f"failed: {exc}"))
            continue
        row = dict(method=m, label=label_of(m))
        if out is None:
            row["note"] = info.get("note", "n/a")
        else:
            row.update(score(out, truth, noisy, stars, **common))
            row.update(seconds=seconds, peak_mb=peak)
            tr = info.get("training") or {}
            if tr:
                row.update(train_seconds=tr.get("seconds"), train_steps=tr.get("steps"),
                           train_stopped=tr.get("stopped"), train_device=tr.get("device"),
                           train_flags=tr.get("flags"), train_steps_per_s=tr.get("steps_per_s"),
                           train_mfu=tr.get("mfu"))
        rows.append(row)
    return rows
