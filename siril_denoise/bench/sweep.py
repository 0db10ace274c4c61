"""Recipe sweep: one learned method under several training recipes, at fixed step counts.

``python -m siril_denoise.bench.sweep [--method n2n] [--scenario faint_mono] SPEC ...``

Each SPEC is comma-separated ``key=value`` pairs: training knobs of
:class:`siril_denoise.training.TrainConfig` (``steps`` for ``max_steps``,
``crop``, ``batch``, ``lr``, ``min_lr_ratio``, ``warmup_steps``, ``bf16``...)
and network options (``levels``, ``features``, ``unshuffle``), e.g.
``levels=2,features=32,crop=64,steps=800``. The special SPECs ``bm3d``,
``siril`` and ``siril-vst`` score the BM3D baseline and Siril's own
``denoise`` / ``denoise -vst`` (needs ``siril-cli``) on the same frame.
Every run goes through the engine's public entry points as the benchmark
does (``train_on_frames`` then ``apply_model`` for n2n, ``denoise_image``
for the zero-shot methods) and is scored against the truth with the
benchmark's metrics. Quality depends only
on the steps (seeded, fixed threads); the seconds depend on the machine and
its load, so the table prints both and steps/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from siril_denoise.layout import to_working
from siril_denoise.methods import METHODS

from .metrics import StarSet, score
from .runner import measured
from .scenes import make_bench_scene
from .table import _num, _pct, markdown_table

NET_KEYS = ("levels", "features", "unshuffle", "depth")
METHOD_KEYS = ("targets", "cfa_targets")
#: SPECs that score a baseline instead of training: SPEC -> bench method name.
BASELINE_SPECS = {"bm3d": "bm3d", "siril": "siril-nlbayes", "siril-vst": "siril-nlbayes-vst"}
COLUMNS = [("PSNR str dB", "psnr_stretched", _num(".2f")), ("sky err ↓", "sky_error_reduction", _num(".1f")),
           ("bias σ", "bias_sigma", _num("+.3f")), ("flux med %", "flux_err_median", _pct("+.2f")),
           ("faint flux %", "faint_flux_err_median", _pct("+.2f")), ("new zero/clip", "new_bad", _num("d")),
           ("steps", "steps", _num("d")), ("best", "best_step", _num("d")), ("steps/s", "steps_per_s", _num(".2f")),
           ("train s", "train_seconds", _num(".0f")), ("time s", "seconds", _num(".0f"))]


def parse_spec(spec: str) -> dict:
    """``"levels=2,features=32,steps=800"`` → a recipe dict for the pipeline (``net_options`` nested)."""
    recipe: dict = {}
    net: dict = {}
    method: dict = {}
    for item in filter(None, (t.strip() for t in spec.split(","))):
        key, _, value = item.partition("=")
        v: object = value
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        else:
            try:
                v = int(value)
            except ValueError:
                v = float(value)
        key = "max_steps" if key == "steps" else key
        if key == "unshuffle":
            v = bool(v)
        elif key == "bf16":  # a fraction of the steps; true/false mean all/none
            v = float(v)
        (net if key in NET_KEYS else method if key in METHOD_KEYS else recipe)[key] = v
    if net:
        recipe["net_options"] = net
    if method:
        recipe["method_options"] = method
    return recipe


def run(method: str, scenario: str, specs: list[str], *, size: int, frames: int, seed: int,
        threads: int | None = None, echo=print) -> list[dict]:
    """Score every SPEC on one scene; one dict per row (also echoed as JSON lines)."""
    from siril_denoise import pipeline

    from .baselines import BASELINES

    scene = make_bench_scene(scenario, size=size, n_frames=frames, seed=seed)
    cfa = scene.cfa_pattern
    noisy, truth = to_working(scene.noisy, cfa)[0], to_working(scene.truth, cfa)[0]
    stars = StarSet(truth, noisy, scene.star_x, scene.star_y, scene.fwhm, scene.saturation, packed=cfa is not None)
    rows = []
    for spec in specs:
        if spec in BASELINE_SPECS:
            out, seconds, _ = measured(lambda: BASELINES[BASELINE_SPECS[spec]](noisy, cfa is not None))
            info: dict = {}
        else:
            recipe = parse_spec(spec)

            def learn():
                if not METHODS[method].single_image:
                    with tempfile.TemporaryDirectory(prefix="siril-denoise-sweep-") as tmp:
                        tm = pipeline.train_on_frames(scene.frames, homographies=scene.homographies, cfa_pattern=cfa,
                                                      method=method, use_gpu=False, seed=seed, threads=threads,
                                                      recipe=recipe, out_dir=tmp)
                        r = pipeline.apply_model(scene.frames[0], tm.onnx_path, cfa_pattern=cfa, use_gpu=False)
                        return r.data, tm.metadata["training"]
                r = pipeline.denoise_image(scene.frames[0], method=method, cfa_pattern=cfa, use_gpu=False, seed=seed,
                                           threads=threads, recipe=recipe)
                return r.data, r.model_metadata["training"]

            (data, info), seconds, _ = measured(learn)
            out = to_working(data, cfa)[0]
        row = {"method": spec, "label": spec, **score(out, truth, noisy, stars, saturation=scene.saturation,
                                                       data_range=scene.data_range), "seconds": seconds}
        row["new_bad"] = int(row["new_zero"]) + int(row["new_clipped"])
        for key in ("steps", "best_step", "steps_per_s", "seconds", "gain", "mfu", "profile", "flags"):
            if key in info:
                row["train_seconds" if key == "seconds" else key] = info[key]
        echo(json.dumps({k: v for k, v in row.items() if k != "label"}), file=sys.stderr)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m siril_denoise.bench.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--method", default="n2n", choices=tuple(METHODS))
    p.add_argument("--scenario", default="faint_mono")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the training default)")
    args = p.parse_args(argv)
    rows = run(args.method, args.scenario, args.specs, size=args.size, frames=args.frames, seed=args.seed,
               threads=args.threads)
    print(markdown_table(rows, COLUMNS, first="recipe"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
