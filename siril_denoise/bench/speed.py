"""Speed and memory: our ``apply`` end to end next to Siril's NL-Bayes, the networks alone, training time.

* End to end (:func:`end_to_end`): ``apply`` of a briefly trained session
  model (n2n's default network, the 3-level U-Net it replaced, and the
  zero-shot default for one image, ZS-N2N) on a 4096×3072 faint 16-bit
  mono frame in a fresh process, read to written, with the seconds of each
  stage; Siril 1.4.4's ``denoise`` (NL-Bayes) on the same frame when
  ``siril-cli`` is installed; the peak RSS of ``apply`` on 6000×4000; and
  tiled vs untiled with the trained models.
* Throughput (megapixels per second) of ``zsn2n``, ``dncnn`` and ``unet``
  through the same :func:`siril_denoise.inference.run_tiled` (the pipeline's
  tile 256 / overlap 64, batch 4), on onnxruntime (:class:`OnnxDenoiser`
  over an exported model) and on PyTorch eager
  (:func:`siril_denoise.export.torch_callable`), mono and RGB, with the
  fraction of the machine's measured float32 matmul rate it reaches
  (network FLOPs counted from its convolutions' multiply-adds). GPU rows
  when torch sees CUDA or onnxruntime offers the CUDA provider.
* Peak resident memory of tiled inference on a 6000×4000 mono frame, in a
  fresh subprocess so nothing else counts.
* Max |tiled − untiled| away from the edges at the default tiling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .siril_baseline import children_cpu_seconds as _cpu_children
from .siril_baseline import run_siril_denoise, siril_available, siril_label
from .table import _num, markdown_table

TILE, OVERLAP, BATCH = 256, 64, 4  # pipeline: tile 256, overlap max(32, tile // 4)
SIZES = {1: (1000, 1000), 6: (2000, 3000), 24: (4000, 6000)}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-multiply rate of this machine (GFLOP/s), torch on the CPU."""
    import torch

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def random_network(name: str, channels: int, seed: int = 0):
    """A network with every convolution re-initialised (the zero-initialised output layers too)."""
    import torch

    from siril_denoise.networks import build_network

    torch.manual_seed(seed)
    net = build_network(name, channels)
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.reset_parameters()
    return net.eval()


def macs_per_pixel(net, channels: int, side: int = 64) -> float:
    """Multiply-accumulates per input pixel, summed over the network's convolutions."""
    import torch

    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(1, channels, side, side))
    for h in handles:
        h.remove()
    return total[0] / (side * side)


def export_random(name: str, channels: int, path: Path):
    """Export a random network of ``name`` to ``path``; returns the torch network."""
    from siril_denoise.export import export_onnx

    net = random_network(name, channels)
    export_onnx(net, path, channels=channels, metadata={"method": "bench", "network": name}, check=False)
    return net


def time_tiled(fn: Callable, shape: tuple[int, int, int]) -> float:
    """Seconds for one tiled pass over a random image of ``shape`` (C, H, W), after a warm-up tile batch."""
    from siril_denoise.inference import run_tiled

    img = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    run_tiled(fn, img[:, :TILE * 2, :TILE * 2], tile=TILE, overlap=OVERLAP, batch=BATCH)
    t0 = time.perf_counter()
    run_tiled(fn, img, tile=TILE, overlap=OVERLAP, batch=BATCH)
    return time.perf_counter() - t0


def tiling_error(fn: Callable, channels: int, side: int = 640) -> float:
    """Max |tiled − untiled| over pixels at least ``OVERLAP`` px from every edge (network domain, σ = 1)."""
    from siril_denoise.inference import run_tiled

    img = np.random.default_rng(1).standard_normal((channels, side, side), dtype=np.float32)
    whole = fn(img[None])[0]
    tiled = run_tiled(fn, img, tile=TILE, overlap=OVERLAP, batch=BATCH)
    m = OVERLAP
    return float(np.abs(tiled - whole)[:, m:-m, m:-m].max())


def peak_rss_mb() -> float:
    """This process's peak resident set in MB since it started its program.

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the program's
    own address space. ``ru_maxrss`` is not used there: a child started by
    fork and exec carries the parent's resident set at the fork in it (a
    benchmark parent holding 1.2 GB made every child report 1.2 GB).
    Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    per_mb = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mb


def rss_child(model: str, height: int, width: int) -> dict:
    """In this (fresh) process: tiled onnxruntime inference on a ``height``×``width`` mono frame.

    Returns ``{"peak_rss_mb", "seconds", "mpix_per_s"}``; the peak is the
    process's maximum resident set (:func:`peak_rss_mb`), input and output
    images included.
    """
    from siril_denoise.inference import OnnxDenoiser, run_tiled

    den = OnnxDenoiser(model, use_gpu=False)
    img = np.random.default_rng(0).standard_normal((1, height, width), dtype=np.float32)
    t0 = time.perf_counter()
    run_tiled(den, img, tile=TILE, overlap=OVERLAP, batch=BATCH)
    seconds = time.perf_counter() - t0
    return {"peak_rss_mb": peak_rss_mb(), "seconds": seconds, "mpix_per_s": height * width / 1e6 / seconds}


def _child(model: Path, height: int = 4000, width: int = 6000) -> dict:
    code = ("import json, sys; from siril_denoise.bench.speed import rss_child; "
            f"print(json.dumps(rss_child({str(model)!r}, {height}, {width})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# End to end: our `apply` next to Siril's NL-Bayes on the same frame
# --------------------------------------------------------------------------

#: Frame sizes (height, width) of the end-to-end runs, and of the memory run.
E2E_SHAPE = {True: (1536, 2048), False: (3072, 4096)}
MEMORY_SHAPE = (4000, 6000)
#: Training steps of the session models the end-to-end runs apply.
E2E_STEPS = {True: 30, False: 150}


def speed_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A faint 16-bit mono sub of ``height``×``width`` (uint16 ADU).

    A synthetic faint scene of up to 1024² (stars, nebulosity,
    Poisson–Gaussian noise; see :func:`siril_denoise.synthetic.faint_mono`)
    mirrored to fill the frame: the same statistics everywhere, at a fraction
    of the cost of rendering a 24-megapixel sky.
    """
    from siril_denoise.synthetic import faint_mono

    side = min(1024, height, width)
    tile = faint_mono(side, seed=seed).frames[0]
    return np.pad(tile, ((0, height - side), (0, width - side)), mode="symmetric")


def session_model(path: Path, net: str | None, steps: int, seed: int = 0, recipe: dict | None = None,
                  method: str = "n2n") -> dict:
    """Train ``method`` (``net``; None: its default network) on a 4-frame faint 256² session, save it at ``path``.

    A single-image method (``zsn2n``...) trains on the session's first frame alone.

    ``recipe``: overrides of the pipeline's recipe (e.g. ``{"net_options": {"levels": 3}}``).

    Returns the model's metadata. A few steps are enough for timing: what
    matters is the network's shape and that its output differs from its input.
    """
    import shutil

    from siril_denoise.pipeline import train_on_frames
    from siril_denoise.synthetic import faint_mono

    from siril_denoise.methods import METHODS

    s = faint_mono(256, seed=seed + 1, n_frames=4, dither=4)
    frames, homographies = list(s.frames), list(s.homographies)
    if METHODS[method].single_image:
        frames, homographies = frames[:1], homographies[:1]
    with tempfile.TemporaryDirectory(prefix="siril-denoise-speed-model-") as tmp:
        m = train_on_frames(frames, homographies=homographies, method=method, net=net,
                            max_steps=steps, use_gpu=False, out_dir=tmp, seed=seed, recipe=recipe)
        shutil.copyfile(m.onnx_path, path)
    return m.metadata


def apply_child(model: str, frame: str, out: str, t_start: float | None = None) -> dict:
    """In this (fresh) process: read ``frame``, ``apply_model`` on the CPU, write ``out``, as ``siril-denoise apply`` does.

    Returns seconds per stage (``import``, ``read``, the stages of
    :func:`~siril_denoise.pipeline.apply_model`, ``write``), ``seconds``
    (read to written, imports excluded), ``peak_rss_mb`` (the process's
    maximum resident set, :func:`peak_rss_mb`) and the report's noise reduction.
    """
    t0 = time.perf_counter()
    from siril_denoise.io import read_image, write_image
    from siril_denoise.pipeline import apply_model

    t1 = time.perf_counter()
    loaded = read_image(frame)
    t2 = time.perf_counter()
    stages: dict = {}
    res = apply_model(loaded.data, model, use_gpu=False, meta=loaded.meta, timings=stages)
    t3 = time.perf_counter()
    write_image(out, res.data, like=loaded, overwrite=True)
    t4 = time.perf_counter()
    return {"import": t1 - t0, "read": t2 - t1, **stages, "write": t4 - t3, "seconds": t4 - t1,
            "peak_rss_mb": peak_rss_mb(),
            "noise_reduction": res.report.noise_reduction_overall}


def run_apply(model: Path, frame: Path, out: Path) -> dict:
    """:func:`apply_child` in a fresh subprocess; adds ``wall`` (the whole process) and ``cpu`` seconds."""
    code = ("import json; from siril_denoise.bench.speed import apply_child; "
            f"print(json.dumps(apply_child({str(model)!r}, {str(frame)!r}, {str(out)!r})))")
    cpu0, t0 = _cpu_children(), time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "wall": wall, "cpu": cpu}


def end_to_end(*, quick: bool, progress: Callable[[str], None] | None = None) -> dict:
    """Our ``apply`` (read → write) next to Siril's NL-Bayes, and the peak RSS of ``apply`` on 6000×4000.

    The default Noise2Noise network, the 3-level U-Net it replaced (when the
    default is another one) and the zero-shot default for one image
    (``zsn2n``), each briefly trained on a synthetic session or its first
    frame, are applied to the same faint 16-bit mono frame, alternating with Siril so
    that load changes on a shared machine hit both alike. Returns
    ``{"rows", "memory", "tiling", "shape"}``.
    """
    from siril_denoise.io import write_image
    from siril_denoise.methods import METHODS, default_single_image_method

    say = progress or (lambda m: None)

    def label(method: str) -> str:
        spec = METHODS[method]
        return spec.network + "".join(f" {k}={v}" for k, v in spec.net_options.items())

    session = "n2n"
    sub, _ = default_single_image_method(is_stack=False, cfa=None)
    nets = {label(session) + f" ({session} default)": (session, None, None),
            label(sub) + f" ({sub}, the default for one sub)": (sub, None, None)}
    options = METHODS[session].net_options
    if METHODS[session].network != "unet" or options.get("levels", 3) != 3 or options.get("features", 32) != 32:
        before = {"net_options": {"levels": 3, "features": 32}}
        nets[f"unet, 3 levels of width 32 ({session} before)"] = (session, "unet", before)
    h, w = E2E_SHAPE[quick]
    rows, memory, tiling = [], [], []
    with tempfile.TemporaryDirectory(prefix="siril-denoise-e2e-") as tmp:
        tmp = Path(tmp)
        models = {}
        for k, (name, (method, net, recipe)) in enumerate(nets.items()):
            say(f"end to end: training a model, {name} ({E2E_STEPS[quick]} steps)")
            models[name] = tmp / f"model{k}.onnx"
            session_model(models[name], net, E2E_STEPS[quick], recipe=recipe, method=method)
        frame = tmp / "frame.fits"
        write_image(frame, speed_frame(h, w))
        mp = h * w / 1e6
        for k, (net, path) in enumerate(models.items()):
            say(f"end to end: apply {net} on {w}×{h}")
            r = run_apply(path, frame, tmp / f"out{k}.fits")
            rows.append({"label": f"siril-denoise apply, {net}", **r, "mpix_per_s": mp / r["seconds"]})
            tiling.append({"label": net, "max_abs_diff": trained_tiling_error(path, frame)})
        say(f"end to end: Siril NL-Bayes on {w}×{h}")
        if siril_available():
            sr = run_siril_denoise(frame, tmp / "siril")
            sr.pop("output")  # a file in the temporary folder
            rows.append({"label": siril_label(vst=False), **sr, "mpix_per_s": mp / sr["denoise"]})
        if not quick:
            mh, mw = MEMORY_SHAPE
            big = tmp / "big.fits"
            write_image(big, speed_frame(mh, mw))
            for k, (net, path) in enumerate(models.items()):
                say(f"memory: apply {net} on {mw}×{mh}")
                r = run_apply(path, big, tmp / f"big{k}.fits")
                memory.append({"label": f"{net} {mw}×{mh}", **r, "mpix_per_s": mh * mw / 1e6 / r["seconds"]})
    return {"rows": rows, "memory": memory, "tiling": tiling, "shape": (h, w)}


def trained_tiling_error(model: Path, frame: Path, side: int = 640) -> float:
    """Max |tiled − untiled| (network domain, σ ≈ 1) of a trained model on a crop of ``frame``, at least ``OVERLAP`` px from the edges.

    Random weights understate it: a trained network's deep layers see
    farther than the ignored quarter of the overlap.
    """
    from siril_denoise.inference import OnnxDenoiser, run_tiled
    from siril_denoise.io import read_image
    from siril_denoise.layout import to_working
    from siril_denoise.pipeline import _noise_and_normaliser

    fn = OnnxDenoiser(model, use_gpu=False)
    loaded = read_image(frame)
    work, info = to_working(loaded.data[:side, :side])
    _, norm = _noise_and_normaliser(work, info, loaded.meta, fn.metadata.get("normalisation", {}).get("transform", "auto"))
    z = norm.forward(work)
    n = side // fn.multiple * fn.multiple
    z = np.ascontiguousarray(z[:, :n, :n])
    whole = fn(z[None])[0]
    tiled = run_tiled(fn, z, tile=TILE, overlap=OVERLAP, batch=BATCH)
    m = OVERLAP
    return float(np.abs(tiled - whole)[:, m:-m, m:-m].max())


def _e2e_markdown(e2e: dict) -> list[str]:
    h, w = e2e["shape"]
    stages = ("import", "read", "prepare", "inference", "protect", "report", "write")
    fmt = lambda v: "–" if v is None else f"{v:.1f}"
    md = [f"End to end on a {w}×{h} faint 16-bit mono frame ({h * w / 1e6:.1f} MP), in one run: our `apply` "
          "(read, noise model, tiled onnxruntime inference, protect, report, write; a fresh process each) and "
          "Siril's own `denoise` (NL-Bayes, defaults) in `siril-cli`. MP/s: megapixels over the read-to-written "
          "seconds for ours, over Siril's logged NL-Bayes time for Siril. wall / CPU: the whole process "
          "(interpreter or Siril start-up included); CPU seconds depend less on other load than wall time.", ""]
    md.append(markdown_table(e2e["rows"], [("s", "seconds", _num(".1f")), ("MP/s", "mpix_per_s", _num(".3f")),
                                           ("process wall s", "wall", _num(".1f")), ("CPU s", "cpu", _num(".1f")),
                                           ("peak RSS MB", "peak_rss_mb", lambda v: fmt(v) if v is None else f"{v:.0f}")],
                              first="what"))
    ours = [r for r in e2e["rows"] if "import" in r]
    if ours:
        md += ["", "Where our seconds go:", ""]
        md.append(markdown_table(ours, [(k, k, lambda v: fmt(v)) for k in stages]
                                 + [("noise ×", "noise_reduction", _num(".1f"))], first="what"))
    nl = next((r for r in e2e["rows"] if "NL-Bayes" in r["label"]), None)
    if nl and ours:
        md += ["", "Speed relative to NL-Bayes (target ≥ 1.5×): " + "; ".join(
            f"{r['label']}: {r['mpix_per_s'] / nl['mpix_per_s']:.2f}× by MP/s, "
            f"{nl['cpu'] / r['cpu']:.2f}× by whole-process CPU seconds" for r in ours)]
    if e2e["memory"]:
        md += ["", "Peak RSS of the whole `apply` process on a 6000×4000 mono frame (target ≤ 1024 MB):", ""]
        md.append(markdown_table(e2e["memory"], [("peak RSS MB", "peak_rss_mb", _num(".0f")),
                                                 ("s", "seconds", _num(".1f")), ("MP/s", "mpix_per_s", _num(".3f"))]
                                 + [(k, k, lambda v: fmt(v)) for k in stages[1:]], first="what"))
    if e2e["tiling"]:
        md += ["", f"Tiled vs untiled with the trained session models (640² crop of the frame, network domain, "
               f"at least {OVERLAP} px from the edges; target ≤ 1e-5):", ""]
        md.append(markdown_table(e2e["tiling"], [("max |tiled − untiled|", "max_abs_diff", _num(".2e"))],
                                 first="network"))
    return md


def _gpu_backends() -> list[tuple[str, str]]:
    out = []
    try:
        import torch

        if torch.cuda.is_available():
            out.append(("torch", "cuda"))
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            out.append(("onnxruntime", "cuda"))
    except ImportError:
        pass
    return out


def run_speed(*, quick: bool = False, scenario_results: dict | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """All speed and memory measurements; returns ``{"peak_gflops", "rows", "rss", "tiling", "end_to_end", "markdown"}``.

    First :func:`end_to_end` (our ``apply`` next to Siril's NL-Bayes; quick:
    on 2048×1536 without the 6000×4000 memory run). Then the networks
    alone. Quick: 1 and 6 MP; the 6000×4000 memory test for ``zsn2n`` only.
    Full: also 24 MP (mono and RGB), and the memory test for every network.
    """
    from siril_denoise.export import torch_callable
    from siril_denoise.inference import OnnxDenoiser
    from siril_denoise.networks import network_names

    e2e = end_to_end(quick=quick, progress=progress)
    peak = matmul_gflops()
    sizes = (1, 6) if quick else (1, 6, 24)
    rows, rss, tiling = [], [], []
    backends = [("onnxruntime", "cpu"), ("torch", "cpu")] + _gpu_backends()
    with tempfile.TemporaryDirectory(prefix="siril-denoise-speed-") as tmp:
        for name in network_names():
            for channels in (1, 3):
                path = Path(tmp) / f"{name}-{channels}.onnx"
                net = export_random(name, channels, path)
                macs = macs_per_pixel(net, channels)
                for backend, device in backends:
                    if backend == "onnxruntime":
                        fn = OnnxDenoiser(path, use_gpu=device != "cpu")
                    else:
                        fn = torch_callable(net.to(device), device=device)
                    if channels == 1 and device == "cpu":
                        err = tiling_error(fn, channels)
                        tiling.append({"network": name, "backend": backend, "max_abs_diff": err})
                    for mp in sizes:
                        if progress:
                            progress(f"speed: {name} {channels}ch {backend}/{device} {mp} MP")
                        h, w = SIZES[mp]
                        sec = time_tiled(fn, (channels, h, w))
                        rate = h * w / 1e6 / sec
                        rows.append({"network": name, "channels": channels, "backend": backend, "device": device,
                                     "megapixels": mp, "seconds": sec, "mpix_per_s": rate,
                                     "gflop_per_mpix": 2 * macs / 1e3,
                                     "peak_fraction": (2 * macs * h * w / sec / 1e9) / peak if device == "cpu"
                                     else None})
                    net.to("cpu")
                if channels == 1 and (not quick or name == "zsn2n"):
                    if progress:
                        progress(f"memory: {name} on 6000×4000 in a subprocess")
                    rss.append({"network": name, **_child(path)})
    training = []
    for scen, res in (scenario_results or {}).items():
        for r in res.get("rows", []):
            if r.get("train_seconds") is not None:
                training.append({"scenario": scen, "method": r["method"], "seconds": r["train_seconds"],
                                 "steps": r.get("train_steps"), "stopped": r.get("train_stopped"),
                                 "device": r.get("train_device")})
    md = _e2e_markdown(e2e) + ["", "Networks alone (random weights):", ""]
    md += [f"Machine float32 matmul peak (torch, 2048²): {peak:.0f} GFLOP/s. Tiling: tile {TILE}, overlap "
           f"{OVERLAP}, batch {BATCH} (the pipeline's defaults).", ""]
    for r in rows:
        r["label"] = f"{r['network']} {'mono' if r['channels'] == 1 else 'RGB'} {r['backend']}/{r['device']}"
    md.append(markdown_table(rows, [("MP", "megapixels", _num("d")), ("s", "seconds", _num(".2f")),
                                    ("MP/s", "mpix_per_s", _num(".3f")),
                                    ("GFLOP/MP", "gflop_per_mpix", _num(".1f")),
                                    ("% of matmul peak", "peak_fraction", lambda v: "–" if v is None
                                     else f"{100 * v:.1f}")], first="network / backend"))
    md += ["", "Peak RSS of tiled onnxruntime inference on a 6000×4000 mono frame (fresh subprocess, "
           "input and output included; target ≤ 1024 MB):", ""]
    for r in rss:
        r["label"] = r["network"]
    md.append(markdown_table(rss, [("peak RSS MB", "peak_rss_mb", _num(".0f")), ("s", "seconds", _num(".1f")),
                                   ("MP/s", "mpix_per_s", _num(".3f"))], first="network"))
    md += ["", f"Tiled vs untiled (640×640 mono, random weights, network domain σ = 1), max |difference| at "
           f"least {OVERLAP} px from the edges (target ≤ 1e-5):", ""]
    for r in tiling:
        r["label"] = f"{r['network']} {r['backend']}"
    md.append(markdown_table(tiling, [("max |tiled − untiled|", "max_abs_diff", _num(".2e"))], first="network"))
    if training:
        md += ["", "Training time per learned method (from the scenario runs):", ""]
        for r in training:
            r["label"] = f"{r['method']} on {r['scenario']}"
        md.append(markdown_table(training, [("s", "seconds", _num(".0f")), ("steps", "steps", _num("d")),
                                            ("stopped", "stopped", lambda v: str(v)),
                                            ("device", "device", lambda v: str(v))], first="method"))
    return {"peak_gflops": peak, "rows": rows, "rss": rss, "tiling": tiling, "training": training,
            "end_to_end": e2e, "markdown": "\n".join(md) + "\n"}
