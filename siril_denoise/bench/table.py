"""Markdown tables and the machine description of a benchmark run."""

from __future__ import annotations

import os
import platform
from typing import Callable, Sequence

Column = tuple[str, str, Callable[[object], str]]


def _num(fmt: str) -> Callable[[object], str]:
    def f(v) -> str:
        return "–" if v is None else format(v, fmt)
    return f


def _pct(fmt: str) -> Callable[[object], str]:
    def f(v) -> str:
        return "–" if v is None else format(100.0 * v, fmt)
    return f


def _zero_clip(row: dict) -> str:
    if row.get("new_zero") is None:
        return "–"
    return f"{row['new_zero']}/{row['new_clipped']}"


#: Columns of a synthetic scene's table: (header, key, formatter).
SCENE_COLUMNS: list[Column] = [
    ("PSNR lin dB", "psnr_linear", _num(".2f")),
    ("PSNR str dB", "psnr_stretched", _num(".2f")),
    ("SSIM str", "ssim_stretched", _num(".4f")),
    ("noise ↓ px", "noise_reduction", _num(".1f")),
    ("noise ↓ 4×4", "noise_reduction_binned", _num(".1f")),
    ("sky err ↓", "sky_error_reduction", _num(".1f")),
    ("bias σ", "bias_sigma", _num("+.3f")),
    ("flux med %", "flux_err_median", _pct("+.2f")),
    ("flux p90 %", "flux_err_p90", _pct(".2f")),
    ("faint flux %", "faint_flux_err_median", _pct("+.2f")),
    ("FWHM ratio", "fwhm_ratio", _num(".3f")),
    ("train s", "train_seconds", _num(".0f")),
    ("time s", "seconds", _num(".1f")),
    ("peak MB", "peak_mb", _num(".0f")),
]


def markdown_table(rows: Sequence[dict], columns: Sequence[Column], *, first: str = "method",
                   label_key: str = "label", extra: dict[str, Callable[[dict], str]] | None = None) -> str:
    """A Markdown table: one row per dict, a first column from ``label_key``, then ``columns``.

    ``extra`` adds columns computed from the whole row (header → function),
    placed after the formatted ones. A row with a ``note`` and no scores
    shows the note in its second column.
    """
    extra = extra or {}
    heads = [first] + [c[0] for c in columns] + list(extra)
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
    for r in rows:
        cells = [str(r.get(label_key, r.get("method", "")))]
        if r.get("note") and not any(r.get(c[1]) is not None for c in columns):
            cells += [r["note"]] + [""] * (len(heads) - 2)
        else:
            cells += [fmt(r.get(key)) for _, key, fmt in columns] + [f(r) for f in extra.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scene_table(rows: Sequence[dict]) -> str:
    """The table of one synthetic scene."""
    return markdown_table(rows, SCENE_COLUMNS, extra={"new 0/clip": _zero_clip})


def machine_description() -> dict:
    """CPU model, cores, memory, OS and library versions of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else info["cores"]
    except ImportError:
        pass
    versions = {}
    for mod in ("numpy", "scipy", "torch", "onnxruntime", "onnx", "skimage", "bm3d"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except Exception:
            versions[mod] = "not installed"
    info["versions"] = versions
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        info["gpu"] = None
    return info


def machine_text(info: dict) -> str:
    """One paragraph describing the machine, for docs/benchmark.md."""
    v = ", ".join(f"{k} {val}" for k, val in info.get("versions", {}).items())
    gpu = info.get("gpu") or "no GPU"
    return (f"{info.get('cpu')}, {info.get('cores_usable', info.get('cores'))} usable cores, "
            f"{info.get('ram_gb', '?')} GB RAM, {gpu}; {info.get('os')}, Python {info.get('python')}; {v}.")
