"""Helpers for tests that run the Siril scripts against the sirilpy stand-in.

A *session* is a folder holding the stand-in's ``session.json`` and its
records, plus a working directory with the FITS files a test prepares. The
scripts run exactly as Siril starts them: ``python -u scripts/X.py args``
with ``MY_SOCKET`` set, ``SIRIL_PYTHON_CLI=1`` when headless, and the
stand-in first on ``PYTHONPATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

STANDIN_DIR = Path(__file__).resolve().parent
FAKE_ENGINE_DIR = STANDIN_DIR / "fake_engine"
REPO = STANDIN_DIR.parent.parent
SCRIPTS = REPO / "scripts"


def write_fits(path: Path, data: np.ndarray, header: dict[str, Any] | None = None) -> Path:
    """A FITS file as Siril writes it (uint16 as BITPIX 16 with BZERO 32768)."""
    from astropy.io import fits

    hdu = fits.PrimaryHDU(data=np.array(data))  # uint16 is stored as int16 + BZERO 32768
    for key, value in (header or {}).items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
    return path


def read_fits(path: Path) -> tuple[np.ndarray, Any]:
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = np.array(hdul[0].data)
        return data.astype(data.dtype.newbyteorder("=")), hdul[0].header.copy()


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_seq(path: Path, name: str, selected: list[bool], *, filenums: list[int] | None = None,
              layers: int = 1, reference: int = -1, version: int = 4, seq_type: str | None = None,
              registration: list[list[float]] | None = None, reg_layer: str = "0",
              variable_sizes: list[tuple[int, int]] | None = None) -> Path:
    """A ``.seq`` file as Siril writes it (``writeseqfile``, format version 4-7).

    ``seq_type``: None (one FITS file per frame), ``"S"`` (SER) or ``"F"``
    (FITSEQ). ``registration``: one 9-float homography per frame, written as
    ``R<reg_layer>`` lines with made-up star statistics.
    """
    filenums = filenums or list(range(1, len(selected) + 1))
    lines = [
        "#Siril sequence file. Contains list of images, selection, registration data and statistics",
        "#S 'sequence_name' start_index nb_images nb_selected fixed_len reference_image version "
        "variable_size fz_flag drizzle",
        f"S '{name}' {filenums[0]} {len(selected)} {sum(selected)} 5 {reference} {version} "
        f"{1 if variable_sizes else 0} 0 0",
    ]
    if seq_type:
        lines.append(f"T{seq_type}")
    lines.append(f"L {layers}")
    for i, (num, incl) in enumerate(zip(filenums, selected)):
        size = f" {variable_sizes[i][0]},{variable_sizes[i][1]}" if variable_sizes else ""
        lines.append(f"I {num} {int(incl)}{size}")
    for h in registration or []:
        lines.append(f"R{reg_layer} 2.31 2.05 0.91 0.74 0.0123 57 H " + " ".join(f"{v:g}" for v in h))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


class Session:
    """One stand-in Siril: its state file, working dir and records."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "siril-session"
        self.wd = root / "wd"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.wd.mkdir(parents=True, exist_ok=True)
        self.state: dict[str, Any] = {
            "wd": str(self.wd), "image": None, "sequence": None, "busy": False, "gui": False,
            "dialog_open": False, "extension": ".fit",
            "configdir": str(self.dir / "config"), "userdatadir": str(self.dir / "userdata"),
        }
        self.save()

    def save(self) -> None:
        (self.dir / "session.json").write_text(json.dumps(self.state, indent=2))

    def load_image(self, data: np.ndarray, header: dict[str, Any] | None = None) -> Path:
        path = write_fits(self.wd / "image.fit", data, header)
        self.state["image"] = str(path)
        self.save()
        return path

    def load_sequence(self, name: str, frames: list[np.ndarray], header: dict[str, Any] | None = None,
                      *, selected: list[bool] | None = None, seq_type: int = 0,
                      registration: list[list[float] | None] | None = None, fixed: int = 5,
                      fz: bool = False, reference: int = 0) -> list[Path]:
        """Frames loaded as Siril's current sequence. Only the GUI can load one (siril-cli
        cannot), so this also marks the session as a GUI. ``registration``: one 9-float H per
        frame in Siril's coordinates (rows counted from the bottom), all zeros where it failed."""
        paths = []
        for i, frame in enumerate(frames, start=1):
            paths.append(write_fits(self.wd / f"{name}{i:0{fixed}d}.fit", frame,
                                    {**(header or {}), "FRAMENUM": i}))
        selected = selected or [True] * len(frames)
        self.state["gui"] = True
        self.state["sequence"] = {
            "seqname": name, "type": seq_type, "reference_image": reference, "fixed": fixed, "fz": fz,
            "frames": [{"filenum": i, "incl": s} for i, s in enumerate(selected, start=1)],
            "registration": registration,
        }
        self.save()
        return paths

    def sequence_on_disk(self, name: str, frames: list[np.ndarray], header: dict[str, Any] | None = None,
                         *, selected: list[bool] | None = None, **seq_options: Any) -> list[Path]:
        """Frames and ``<name>.seq`` in the working directory, nothing loaded (as under siril-cli)."""
        paths = [write_fits(self.wd / f"{name}{i:05d}.fit", frame, {**(header or {}), "FRAMENUM": i})
                 for i, frame in enumerate(frames, start=1)]
        write_seq(self.wd / f"{name}.seq", name, selected or [True] * len(frames), **seq_options)
        return paths

    def records(self, name: str) -> list[dict]:
        path = self.dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def log_text(self) -> str:
        return "\n".join(r["message"] for r in self.records("log.jsonl"))

    def calls(self, kind: str | None = None) -> list[dict]:
        return [r for r in self.records("calls.jsonl") if kind is None or r["kind"] == kind]

    @property
    def models_dir(self) -> Path:
        return Path(self.state["userdatadir"]) / "siril-denoise" / "models"


def run_script(script: str, args: list[str], session: Session | None, *, cli: bool = True,
               fake_engine: bool = False, extra_env: dict[str, str] | None = None,
               connect: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Start an entry script as Siril does and wait for it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MY_SOCKET", "MY_PIPE", "SIRIL_PYTHON_CLI", "SIRILPY_STANDIN_STATE")}
    paths = [str(STANDIN_DIR)] + ([str(FAKE_ENGINE_DIR)] if fake_engine else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONUTF8"] = "1"
    env["QT_QPA_PLATFORM"] = "offscreen"
    if connect:
        env["MY_SOCKET"] = "/tmp/siril-standin.sock"
    if cli:
        env["SIRIL_PYTHON_CLI"] = "1"
    if session is not None:
        env["SIRILPY_STANDIN_STATE"] = str(session.dir)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-u", str(SCRIPTS / script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
