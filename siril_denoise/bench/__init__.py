"""The benchmark: ``siril-denoise bench`` / ``python -m siril_denoise.bench``.

Scores every method (learned: zsn2n, nb2nb, n2n; classical: bm3d, nlm,
wavelet, gaussian, and Siril's own ``denoise`` and ``denoise -vst`` where
``siril-cli`` is installed; and the mean of the session's frames) on synthetic scenes
with known truth and, when the data are present, on real Seestar frames
against their stack; optionally measures inference speed and memory.
Prints one Markdown table per scenario and writes the numbers as JSON.
Seeded and repeatable: learned methods train for a number of steps (their
defaults, or ``--steps``), so quality figures do not depend on how busy the
machine is; only the times do. Exits with status 1 when a method fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

from .runner import LABELS, METHODS, default_methods, run_scene
from .scenes import SCENARIOS, make_bench_scene
from .table import machine_description, machine_text, scene_table

__all__ = ["main", "run_benchmark", "build_parser"]

ALL_SCENARIOS = SCENARIOS + ("real",)

#: Settings of the full and the quick run. ``steps``: training steps per learned method (None: the
#: method's default, :attr:`siril_denoise.methods.MethodSpec.recipe`); the quick run's are enough for every
#: learned method to beat the noisy input clearly on its 128² scenes.
FULL = {"size": 512, "frames": 10, "steps": None}
QUICK = {"size": 128, "frames": 4, "steps": 200}


def default_real_dir() -> Path:
    """``../shared/data/real`` relative to the project root (the folder holding ``siril_denoise``)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


def build_parser(prog: str = "siril-denoise bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmark the denoisers on scenes with known truth "
                                "and on real frames; prints Markdown tables and writes JSON.")
    p.add_argument("--scenario", default=",".join(ALL_SCENARIOS),
                   help=f"comma-separated scenarios (default: all; 'none' with --speed for speed only): "
                        f"{', '.join(ALL_SCENARIOS)}")
    p.add_argument("--methods", default=",".join(default_methods()),
                   help=f"comma-separated methods (default: all; Siril's rows where siril-cli is installed): "
                        f"{', '.join(METHODS)}")
    p.add_argument("--size", type=int, default=None, help="side of the synthetic frames in pixels "
                   f"(default {FULL['size']}, quick {QUICK['size']})")
    p.add_argument("--frames", type=int, default=None, help="frames per synthetic session "
                   f"(default {FULL['frames']}, quick {QUICK['frames']})")
    p.add_argument("--steps", type=int, default=None, help="training steps per learned method "
                   f"(default: each method's own, quick {QUICK['steps']})")
    p.add_argument("--time-limit", "--time-budget", dest="time_budget", type=float, default=None,
                   help="optional cap on training seconds per learned method (default: none)")
    p.add_argument("--quick", action="store_true", help="small sizes and short training (a few minutes)")
    p.add_argument("--speed", action="store_true", help="also measure inference speed and memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-dir", type=Path, default=None, help="folder of the real frames "
                   "(default: ../shared/data/real next to the project)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as a Markdown document here")
    return p


def _split(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise SystemExit(f"Unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def _clean(obj):
    """JSON-safe copy: NaN/inf become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return _clean(obj.item())
    return obj


def run_benchmark(scenarios: list[str], methods: list[str], *, size: int, frames: int,
                  time_budget: float | None = None, steps: int | None = None,
                  quick: bool = False, speed: bool = False, seed: int = 0, real_dir: Path | None = None,
                  echo=print) -> dict:
    """Run the chosen scenarios (and speed tests); return the results dict (see :func:`main`)."""
    results: dict = {"config": {"scenarios": scenarios, "methods": methods, "size": size, "frames": frames,
                                "time_budget": time_budget, "steps": steps, "quick": quick, "seed": seed},
                     "machine": machine_description(), "scenarios": {}}
    t_start = time.perf_counter()
    for name in scenarios:
        t0 = time.perf_counter()
        if name == "real":
            from .real import run_real

            res = run_real(real_dir or default_real_dir(), methods, quick=quick, time_budget=time_budget,
                           steps=steps, seed=seed, progress=lambda m: echo(f"  … {m}", file=sys.stderr))
            results["scenarios"]["real"] = res
            echo(res["markdown"])
            continue
        scene = make_bench_scene(name, size=size, n_frames=frames, seed=seed)
        rows = run_scene(scene, methods, time_budget=time_budget, steps=steps, seed=seed,
                         progress=lambda m: echo(f"  … {m}", file=sys.stderr))
        md = f"### {name}: {scene.description}\n\n{scene_table(rows)}\n"
        results["scenarios"][name] = {"description": scene.description, "rows": rows, "markdown": md,
                                      "seconds": time.perf_counter() - t0}
        echo(md)
    if speed:
        from .speed import run_speed

        res = run_speed(quick=quick, scenario_results=results["scenarios"],
                        progress=lambda m: echo(f"  … {m}", file=sys.stderr))
        results["speed"] = res
        echo(res["markdown"])
    results["seconds"] = time.perf_counter() - t_start
    return _clean(results)


LEGEND = """Columns: PSNR on linear data (peak = the data range) and after one asinh display stretch derived
from the truth (the same for every method); SSIM on the stretched images; background noise reduction
(input sky noise / output sky noise, per pixel and on 4×4 means, the quality report's measure);
background bias vs the truth in units of the input noise (worst channel); star aperture-flux error vs the
truth (median and 90th percentile of |error| over stars with SNR > 20; faint: 20 < SNR < 50); FWHM of the
brightest scored stars, result / truth; training seconds; wall time of the whole method (training, export
and inference for learned ones); peak extra resident memory; new zero / clipped pixels."""


def _steps_text(cfg: dict) -> str:
    steps = f"{cfg['steps']} steps" if cfg.get("steps") else "their default steps"
    cap = cfg.get("time_budget")
    return steps + (f" (at most {cap:g} s)" if cap else "")


def failed_rows(results: dict) -> list[str]:
    """``scenario: method: why`` for every method that failed (the benchmark then exits with 1)."""
    out = []
    for name, res in results.get("scenarios", {}).items():
        for r in res.get("rows", []):
            if str(r.get("note", "")).startswith("failed"):
                out.append(f"{name}: {r['method']}: {r['note']}")
    return out


def to_markdown(results: dict, command: str) -> str:
    """The results document (docs/benchmark.md): command, machine, tables."""
    cfg = results["config"]
    parts = ["# Benchmark results", "",
             f"Command: `{command}`", "",
             f"Machine: {machine_text(results['machine'])}", "",
             f"Settings: synthetic frames {cfg['size']}×{cfg['size']}, {cfg['frames']} frames per session, "
             f"learned methods trained for {_steps_text(cfg)}, seed {cfg['seed']}; "
             f"total run time {results.get('seconds', 0) / 60:.1f} min.", "",
             "All methods denoise the same frame 0 (float32 in data units; raw Bayer frames as their 4 packed "
             "CFA planes for the baselines, through the pipeline's CFA mode for the learned methods). "
             "n2n is trained on the whole session (frame 0 included, one frame held out for validation) and "
             "applied to frame 0, as a user would.", "", LEGEND, "", "## Synthetic scenes", ""]
    for name, res in results["scenarios"].items():
        if name != "real":
            parts += [res["markdown"], ""]
    if "real" in results["scenarios"]:
        parts += ["## Real frames", "", results["scenarios"]["real"]["markdown"], ""]
    if "speed" in results:
        parts += ["## Speed and memory", "", results["speed"]["markdown"], ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``siril-denoise bench``; returns the exit status."""
    args = build_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    scenarios = _split(args.scenario, ALL_SCENARIOS, "scenario")
    methods = _split(args.methods, METHODS, "method")
    size = args.size or base["size"]
    frames = args.frames or base["frames"]
    steps = args.steps if args.steps is not None else base["steps"]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run_benchmark(scenarios, methods, size=size, frames=frames, time_budget=args.time_budget,
                            steps=steps, quick=args.quick, speed=args.speed, seed=args.seed,
                            real_dir=args.real_dir)
    command = "siril-denoise bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results["command"] = command.strip()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, allow_nan=False))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(to_markdown(results, results["command"]))
    failed = failed_rows(results)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0
