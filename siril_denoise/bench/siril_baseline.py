"""Siril's own ``denoise`` (NL-Bayes) as a benchmark baseline, run in the installed ``siril-cli``.

:func:`run_siril_denoise` runs ``load`` / ``denoise`` / ``save`` on a FITS
file in a headless Siril and reports its times; the speed bench uses it on
a large frame. :func:`siril_nlbayes` and :func:`siril_nlbayes_vst` wrap it as
baselines of the synthetic benchmark, with the signature of
:mod:`siril_denoise.bench.baselines`: a working image float32 ``(C, H, W)``
in data units in, the same shape and units out.

Siril stores float images in [0, 1] and divides float FITS data above 1 on
loading, so the image goes in as float32 divided by a scale of our own
(:func:`siril_scale`) and the result is multiplied back. A no-op round trip
(``load`` then ``save``) returns the written array bit for bit, in the same
row order (checked in ``tests/test_bench_siril.py``).

Siril runs with a fresh configuration in the work folder (its defaults, not
the preferences of whoever runs the bench). Where ``siril-cli`` is absent,
and for packed raw-Bayer planes (Siril's ``denoise`` is meant for a
debayered or mono image, not a CFA mosaic), the baselines raise
:class:`NotApplicable`, which the bench shows as an ``n/a`` row.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

#: The headless Siril the baselines run (``$SIRIL_CLI`` overrides the default install).
SIRIL_CLI = Path(os.environ.get("SIRIL_CLI", "/opt/siril/bin/siril-cli"))
#: Version named in the labels when ``siril-cli --version`` cannot be read.
SIRIL_VERSION = "1.4.4"
#: Seconds a single ``siril-cli`` run may take before it counts as failed.
SIRIL_TIMEOUT = 1800.0


class NotApplicable(RuntimeError):
    """A baseline that cannot run on this input or this machine; the message says why."""


def siril_available(siril: Path | None = None) -> bool:
    """Whether ``siril`` (default :data:`SIRIL_CLI`) is an executable file."""
    path = Path(siril or SIRIL_CLI)
    return path.is_file() and os.access(path, os.X_OK)


@functools.lru_cache(maxsize=4)
def _version_of(path: str) -> str | None:
    try:
        with tempfile.TemporaryDirectory(prefix="siril-denoise-siril-") as home:
            res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                 env=_siril_env(Path(path), Path(home)))
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"siril\s+(\d+\.\d+\.\d+\S*)", res.stdout + res.stderr, re.IGNORECASE)
    return m.group(1) if m else None


def siril_version(siril: Path | None = None) -> str:
    """Version of the installed Siril (``siril-cli --version``), else :data:`SIRIL_VERSION`."""
    path = Path(siril or SIRIL_CLI)
    return (_version_of(str(path)) if siril_available(path) else None) or SIRIL_VERSION


def siril_label(vst: bool, siril: Path | None = None) -> str:
    """The bench label of the row: ``Siril 1.4.4 denoise (NL-Bayes)`` or ``Siril 1.4.4 denoise -vst``."""
    return f"Siril {siril_version(siril)} denoise " + ("-vst" if vst else "(NL-Bayes)")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished child processes (POSIX only)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def siril_seconds(text: str, what: str) -> float | None:
    """Seconds from a Siril log line such as ``NL-Bayes execution time: 1 min 02 s`` (``9.71 s``, ``170.25 ms``)."""
    m = re.search(rf"{what} execution time:\s*(?:(\d+)\s*h\s*)?(?:(\d+)\s*min\s*)?([\d.]+)\s*(ms|s)\b", text)
    if not m:
        return None
    last = float(m.group(3)) / (1000.0 if m.group(4) == "ms" else 1.0)
    return 3600.0 * float(m.group(1) or 0) + 60.0 * float(m.group(2) or 0) + last


def _siril_env(siril: Path, home: Path) -> dict:
    """Environment for ``siril-cli``: a clean ``PATH`` and a private home, so Siril starts from its defaults."""
    env = {**os.environ, "PATH": f"{siril.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home)}
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CACHE_HOME", ".cache")):
        env[var] = str(home / sub)
    return env


def run_siril_script(lines: list[str], workdir: Path, *, siril: Path | None = None,
                     timeout: float = SIRIL_TIMEOUT) -> dict:
    """Run the Siril script ``lines`` with ``siril-cli -d workdir -s script``.

    ``workdir`` (created if needed) receives the script (``script.ssf``) and
    Siril's private configuration (``home/``). Returns ``log`` (stdout and
    stderr), ``returncode``, and ``wall`` and ``cpu`` seconds of the whole
    process. Raises :class:`NotApplicable` when Siril is not installed and
    :class:`RuntimeError` when it runs past ``timeout`` seconds.
    """
    siril = Path(siril or SIRIL_CLI)
    if not siril_available(siril):
        raise NotApplicable(f"needs Siril's siril-cli ({siril} not found)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "script.ssf"
    script.write_text("\n".join(lines) + "\n")
    cpu0, t0 = children_cpu_seconds(), time.perf_counter()
    try:
        res = subprocess.run([str(siril), "-d", str(workdir), "-s", str(script)], capture_output=True, text=True,
                             env=_siril_env(siril, workdir / "home"), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"siril-cli did not finish in {timeout:.0f} s: {lines}") from exc
    return {"log": res.stdout + res.stderr, "returncode": res.returncode,
            "wall": time.perf_counter() - t0, "cpu": children_cpu_seconds() - cpu0}


def run_siril_denoise(frame: Path, workdir: Path, *, vst: bool = False, denoise: bool = True,
                      siril: Path | None = None, timeout: float = SIRIL_TIMEOUT) -> dict:
    """Siril's ``denoise`` (NL-Bayes, defaults; ``vst``: ``denoise -vst``) on the FITS file ``frame``.

    Runs ``requires 1.4.0`` / ``load`` / ``denoise`` / ``save`` with
    :func:`run_siril_script` in ``workdir``, which receives
    ``nlbayes.fit`` (or ``nlbayes-vst.fit``), the result as Siril saves it
    (float32 in [0, 1] for a float input). ``denoise=False`` leaves the
    ``denoise`` line out: ``copy.fit`` is the file as Siril loads and saves
    it (the round-trip check).

    Returns ``output`` (that path), ``wall`` and ``cpu`` seconds of the whole
    ``siril-cli`` process (start, load, denoise, save), and ``denoise`` (also
    ``seconds``), the NL-Bayes time Siril logs (None without ``denoise``).
    Raises :class:`NotApplicable` when Siril is not installed and
    :class:`RuntimeError` when the run fails.
    """
    workdir = Path(workdir).resolve()
    name = ("nlbayes-vst" if vst else "nlbayes") if denoise else "copy"
    out = workdir / f"{name}.fit"
    out.unlink(missing_ok=True)
    lines = ["requires 1.4.0", f'load "{Path(frame).resolve()}"']
    if denoise:
        lines.append("denoise -vst" if vst else "denoise")
    lines.append(f'save "{workdir / name}"')
    run = run_siril_script(lines, workdir, siril=siril, timeout=timeout)
    seconds = siril_seconds(run["log"], "NL-Bayes")
    # siril-cli can exit 0 after a failed command: the log and the saved file are the proof
    if run["returncode"] != 0 or (denoise and seconds is None) or not out.is_file():
        raise RuntimeError(f"siril-cli {lines[2]} failed (exit {run['returncode']}): {run['log'][-2000:]}")
    return {"output": out, "wall": run["wall"], "cpu": run["cpu"], "denoise": seconds, "seconds": seconds}


def siril_scale(work: np.ndarray) -> float:
    """The divisor that brings ``work`` (data units, ≥ 0) into Siril's float range [0, 1].

    1 for data already in [0, 1] (stacks); 65535 for 16-bit ADU (Siril's own
    conversion of a 16-bit image to 32-bit); the maximum above that.
    """
    hi = float(np.nanmax(work)) if work.size else 0.0
    if hi <= 1.0:
        return 1.0
    return 65535.0 if hi <= 65535.0 else hi


def siril_fits_roundtrip(work: np.ndarray, *, denoise: bool = True, vst: bool = False,
                         siril: Path | None = None) -> np.ndarray:
    """``work`` (float32 ``(1, H, W)`` or ``(3, H, W)``, data units) through Siril; the same shape and units back.

    Mono goes in as a 2-D FITS image, colour as a 3-plane cube (Siril's RGB
    layout), both float32 divided by :func:`siril_scale`. ``denoise=False``
    only loads and saves (the round-trip check).
    """
    from astropy.io import fits

    work = np.asarray(work, dtype=np.float32)
    if work.ndim != 3 or work.shape[0] not in (1, 3):
        raise NotApplicable(f"Siril takes a mono or RGB image; this one has shape {work.shape}")
    scale = siril_scale(work)
    with tempfile.TemporaryDirectory(prefix="siril-denoise-siril-") as tmp:
        tmp = Path(tmp)
        frame = tmp / "input.fit"
        plane = work[0] if work.shape[0] == 1 else work
        fits.PrimaryHDU(data=np.ascontiguousarray(plane / np.float32(scale))).writeto(frame)
        out = run_siril_denoise(frame, tmp, vst=vst, denoise=denoise, siril=siril)["output"]
        data = np.asarray(fits.getdata(out), dtype=np.float32)
    if data.shape != plane.shape:
        raise RuntimeError(f"Siril returned an image of shape {data.shape} for one of {plane.shape}")
    return data.reshape(work.shape) * np.float32(scale)


def _baseline(work: np.ndarray, packed: bool, vst: bool) -> np.ndarray:
    if packed:
        raise NotApplicable("Siril's denoise works on a mono or debayered image, not on raw CFA planes")
    return siril_fits_roundtrip(work, vst=vst)


def siril_nlbayes(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """Siril's ``denoise`` (NL-Bayes, Siril's defaults) on ``work`` (float32 ``(C, H, W)``, data units ≥ 0).

    Raises :class:`NotApplicable` for packed raw-Bayer planes and when
    ``siril-cli`` is absent.
    """
    return _baseline(work, packed, vst=False)


def siril_nlbayes_vst(work: np.ndarray, packed: bool = False) -> np.ndarray:
    """Siril's ``denoise -vst`` (NL-Bayes after Siril's generalised Anscombe transform); as :func:`siril_nlbayes`."""
    return _baseline(work, packed, vst=True)


#: Bench method name -> baseline, in the names of the real-frame rows (:data:`siril_denoise.bench.real.SIRIL_ROWS`).
SIRIL_BASELINES = {"siril-nlbayes": siril_nlbayes, "siril-nlbayes-vst": siril_nlbayes_vst}
