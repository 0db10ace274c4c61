"""Inference speed and memory of the networks (random weights), and training time.

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

from .table import _num, markdown_table

NETS = ("zsn2n", "dncnn", "unet")
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


def rss_child(model: str, height: int, width: int) -> dict:
    """In this (fresh) process: tiled onnxruntime inference on a ``height``×``width`` mono frame.

    Returns ``{"peak_rss_mb", "seconds", "mpix_per_s"}``; the peak is the
    process's lifetime maximum resident set (``ru_maxrss``), input and output
    images included.
    """
    import resource

    from siril_denoise.inference import OnnxDenoiser, run_tiled

    den = OnnxDenoiser(model, use_gpu=False)
    img = np.random.default_rng(0).standard_normal((1, height, width), dtype=np.float32)
    t0 = time.perf_counter()
    run_tiled(den, img, tile=TILE, overlap=OVERLAP, batch=BATCH)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": peak_kb / 1024.0, "seconds": seconds, "mpix_per_s": height * width / 1e6 / seconds}


def _child(model: Path, height: int = 4000, width: int = 6000) -> dict:
    code = ("import json, sys; from siril_denoise.bench.speed import rss_child; "
            f"print(json.dumps(rss_child({str(model)!r}, {height}, {width})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    """All speed and memory measurements; returns ``{"peak_gflops", "rows", "rss", "tiling", "markdown"}``.

    Quick: 1 and 6 MP; the 6000×4000 memory test for ``zsn2n`` only. Full:
    also 24 MP (mono and RGB), and the memory test for every network.
    """
    from siril_denoise.export import torch_callable
    from siril_denoise.inference import OnnxDenoiser

    peak = matmul_gflops()
    sizes = (1, 6) if quick else (1, 6, 24)
    rows, rss, tiling = [], [], []
    backends = [("onnxruntime", "cpu"), ("torch", "cpu")] + _gpu_backends()
    with tempfile.TemporaryDirectory(prefix="siril-denoise-speed-") as tmp:
        for name in NETS:
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
    md = [f"Machine float32 matmul peak (torch, 2048²): {peak:.0f} GFLOP/s. Tiling: tile {TILE}, overlap "
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
            "markdown": "\n".join(md) + "\n"}
