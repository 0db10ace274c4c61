"""Harness for the tests that run the scripts inside the real Siril (``siril-cli``).

Every test in this folder carries the ``real_siril`` marker (deselect them with
``-m "not real_siril"``). Where ``siril-cli`` is absent (``$SIRIL_CLI``, default
``/opt/siril/bin/siril-cli``; install it with ``../shared/tools/siril/install.sh``)
the folder is not collected and the run ends with one line saying so.

What a test gets:

``siril`` (session fixture, a :class:`Siril`)
    ``siril.run_ssf(lines, workdir)`` writes ``lines`` as a Siril script file,
    runs ``siril-cli -d WORKDIR -s script.ssf`` with a clean ``PATH`` and the
    session's temporary ``HOME`` / ``XDG_*`` folders, and returns a
    :class:`SirilRun` (the log text, helpers to find lines). ``siril.pyscript(
    "SirilDenoise_Image.py", "--method", "zsn2n")`` is the ``.ssf`` line that runs
    one of the project's scripts. ``siril.env()`` is the environment, for other
    ways of starting Siril (the GUI under Xvfb).

One Siril venv per session
    Siril creates its Python venv in ``$XDG_DATA_HOME/siril/venv`` on the first
    ``pyscript``, and the scripts install what they need into it. All tests of
    a session share one temporary ``HOME``, so that happens once: the
    ``first_run`` fixture is that genuine first run (an empty venv, the Image
    script installs everything itself and says so); every ``siril`` user
    depends on it. ``TorchHelper.ensure_torch()`` runs ``pip install torch
    torchvision``, which on a machine without GPU resolves to PyPI's CUDA
    build (2.8 GB, torch 2.14.1 + nvidia-* on this machine); the session's pip
    gets ``PIP_CONSTRAINT`` pinning ``torch==2.13.0``, the small CPU build the
    README installs, so TorchHelper itself installs torch in seconds.

Reading results
    :func:`read_fits` / :func:`write_fits` / :func:`crop_fits` for FITS files,
    :func:`background_noise` for a robust noise figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SHARED = REPO.parent / "shared"
REAL_DATA = SHARED / "data" / "real"
SIRIL_CLI = Path(os.environ.get("SIRIL_CLI", "/opt/siril/bin/siril-cli"))
#: The README's torch: the small CPU build (see the module docstring).
TORCH_PIN = "torch==2.13.0"

_AVAILABLE = SIRIL_CLI.is_file() and os.access(SIRIL_CLI, os.X_OK)
_WHY_SKIPPED = (f"real-Siril suite (tests/real_siril): {SIRIL_CLI} not found; install Siril "
                "with ../shared/tools/siril/install.sh (or set SIRIL_CLI)")

if not _AVAILABLE:
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_siril: runs the scripts inside the real Siril "
                                       "(siril-cli); skipped when Siril is not installed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_siril)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _AVAILABLE:
        terminalreporter.write_line("SKIPPED " + _WHY_SKIPPED, yellow=True)


# --------------------------------------------------------------------------
# Running siril-cli


@dataclass
class SirilRun:
    """One ``siril-cli`` run: its log (stdout and stderr), exit code and time."""

    log: str
    returncode: int
    workdir: Path
    seconds: float
    script: Path

    def lines(self, pattern: str = "") -> list[str]:
        """Log lines (without Siril's ``log: `` prefix) matching the regular expression ``pattern``."""
        out = []
        for line in self.log.splitlines():
            text = line[5:] if line.startswith("log: ") else line
            if re.search(pattern, text):
                out.append(text)
        return out

    def errors(self) -> list[str]:
        """Lines a script logged as errors (they start with ``ERROR``)."""
        return self.lines(r"^ERROR")

    def between(self, start: str, end: str = r"^Running command: ") -> list[str]:
        """The lines after the first match of ``start`` up to the next match of ``end``."""
        lines = self.lines()
        for i, line in enumerate(lines):
            if re.search(start, line):
                rest = []
                for later in lines[i + 1:]:
                    if re.search(end, later):
                        break
                    rest.append(later)
                return rest
        return []

    def sections(self, start: str = r"^Running command: load") -> list[list[str]]:
        """The log cut before every line matching ``start`` (default: one section per ``load``);
        section 0 is what came before the first match."""
        out: list[list[str]] = [[]]
        for line in self.lines():
            if re.search(start, line):
                out.append([])
            out[-1].append(line)
        return out

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.log, self.log[-6000:]


class Siril:
    """A real Siril with a temporary ``HOME``, shared by the session's tests."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cli = SIRIL_CLI
        (home / ".local" / "share").mkdir(parents=True, exist_ok=True)
        (home / ".config").mkdir(parents=True, exist_ok=True)
        (home / ".cache").mkdir(parents=True, exist_ok=True)
        self.constraints = home / "pip-constraints.txt"
        self.constraints.write_text(TORCH_PIN + "\n")

    @property
    def venv(self) -> Path:
        return self.home / ".local" / "share" / "siril" / "venv"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python3"

    @property
    def userdata(self) -> Path:
        """Siril's user data folder (``get_siril_userdatadir()``)."""
        return self.home / ".local" / "share" / "siril"

    @property
    def models_dir(self) -> Path:
        return self.userdata / "siril-denoise" / "models"

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: Siril's own PATH, this session's HOME, the machine's pip settings."""
        env = {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "PATH": f"{self.cli.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_CONSTRAINT": str(self.constraints),
        }
        # The machine's pip configuration (mirrors, certificates, timeouts) applies in Siril's venv too.
        for key, value in os.environ.items():
            if key.startswith("PIP_") and key != "PIP_CONSTRAINT":
                env[key] = value
        for key in ("TZ", "TMPDIR"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra)
        return env

    @staticmethod
    def pyscript(script: str, *args: Any) -> str:
        """The ``.ssf`` line that runs one of the project's scripts (``scripts/<script>``)."""
        path = SCRIPTS / script if "/" not in script else Path(script)
        words = [str(a) for a in args]
        return " ".join(["pyscript", _quote(str(path)), *(_quote(w) for w in words)])

    def run_ssf(self, lines: Iterable[str], workdir: Path, *, timeout: float = 300,
                name: str = "test.ssf", env: dict[str, str] | None = None) -> SirilRun:
        """Run ``lines`` as a Siril script in ``workdir`` (``siril-cli -d workdir -s script``)."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / name
        script.write_text("requires 1.4.0\n" + "\n".join(lines) + "\n")
        start = time.monotonic()
        try:
            proc = subprocess.run([str(self.cli), "-d", str(workdir), "-s", str(script)],
                                  env=env or self.env(), cwd=str(workdir), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"")
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            pytest.fail(f"siril-cli did not finish in {timeout:.0f} s; log so far:\n{out[-6000:]}")
        run = SirilRun(proc.stdout + proc.stderr, proc.returncode, workdir,
                       time.monotonic() - start, script)
        (workdir / (name + ".log")).write_text(run.log)
        return run


def _quote(word: str) -> str:
    """Siril splits a command line on spaces and honours double quotes."""
    if not word or any(c.isspace() for c in word) or '"' in word:
        return '"' + word.replace('"', '\\"') + '"'
    return word


# --------------------------------------------------------------------------
# FITS helpers


def read_fits(path: Path) -> tuple[np.ndarray, Any]:
    """Pixels (uint16 for 16-bit files, with BZERO applied; float32 otherwise) and the header."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = np.array(hdul[0].data)
        header = hdul[0].header.copy()
    return data.astype(data.dtype.newbyteorder("=")), header


def write_fits(path: Path, data: np.ndarray, header: Any = None) -> Path:
    """A FITS file as Siril writes it (uint16 as BITPIX 16 + BZERO 32768, float32 as -32)."""
    from astropy.io import fits

    hdr = fits.Header()
    for card in (header.cards if hasattr(header, "cards") else []):
        if card.keyword not in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
                                "BZERO", "BSCALE", "") and card.keyword not in ("COMMENT", "HISTORY"):
            hdr[card.keyword] = (card.value, card.comment)
    if isinstance(header, dict):
        for key, value in header.items():
            hdr[key] = value
    fits.PrimaryHDU(data=np.ascontiguousarray(data), header=hdr).writeto(path, overwrite=True)
    return Path(path)


def crop_fits(src: Path, dst: Path, y0: int, x0: int, height: int, width: int,
              **header_changes: Any) -> Path:
    """A crop of ``src`` (rows ``y0..``, columns ``x0..``) with its header; keywords changed or
    (value None) removed by ``header_changes`` (``ROWORDER="BOTTOM-UP"``)."""
    data, header = read_fits(src)
    crop = data[..., y0:y0 + height, x0:x0 + width]
    for key, value in header_changes.items():
        key = key.replace("_", "-") if key in ("CCD_TEMP", "DATE_OBS") else key
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    return write_fits(dst, crop, header)


def background_noise(data: np.ndarray) -> float:
    """Pixel-to-pixel noise (MAD of horizontal differences / sqrt 2), robust to stars."""
    x = np.asarray(data, dtype=np.float64)
    d = np.diff(x, axis=-1).ravel()
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / np.sqrt(2.0))


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def siril_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's HOME: Siril's config and Python venv live here, shared by all tests."""
    return tmp_path_factory.mktemp("siril-home")


@pytest.fixture(scope="session")
def first_run(siril_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SirilRun:
    """The genuine first run: an empty Siril venv, the Image script (ZS-N2N) on a 16-bit mono
    crop of a real frame. Everything the scripts need is installed here, by the script itself."""
    siril = Siril(siril_home)
    assert not siril.venv.exists(), "the first run must start without a Siril venv"
    workdir = tmp_path_factory.mktemp("first-run")
    src = REAL_DATA / "m13-blue" / "M13_blue_0001.fits"
    if not src.is_file():
        pytest.skip(f"real frames not found: {src}")
    crop_fits(src, workdir / "mono16.fit", 400, 560, 192, 192)
    return siril.run_ssf([
        "load mono16.fit",
        siril.pyscript("SirilDenoise_Image.py", "--method", "zsn2n", *quick_training()),
        "save first_run_out",
    ], workdir, timeout=900, name="first_run.ssf")


@pytest.fixture(scope="session")
def siril(siril_home: Path, first_run: SirilRun) -> Siril:
    """The real Siril, its venv already made by :func:`first_run`."""
    return Siril(siril_home)


def quick_training() -> list[str]:
    """Flags for a short zero-shot training: a step count when the scripts have one, else seconds."""
    text = _image_help()
    for flag, value in (("--steps", "60"), ("--max-steps", "60"), ("--iterations", "60")):
        if re.search(rf"(^|\s){re.escape(flag)}[\s=]", text):
            return [flag, value]
    return ["--time-budget", "4"]


_HELP: list[str] = []


def _image_help() -> str:
    """The Image script's ``--help`` (run with the project's Python and the stand-in, outside Siril)."""
    if not _HELP:
        import sys

        standin = REPO / "tests" / "sirilpy_standin"
        env = {**os.environ, "PYTHONPATH": str(standin)}
        proc = subprocess.run([sys.executable, str(SCRIPTS / "SirilDenoise_Image.py"), "--help"],
                              env=env, capture_output=True, text=True, timeout=120)
        _HELP.append(proc.stdout)
    return _HELP[0]



# --------------------------------------------------------------------------
# The GUI under Xvfb: a loaded sequence, as a user has it

#: Screen positions in a 1600x1000 Xvfb screen (Siril 1.4.4, no window manager): the welcome
#: dialog's close button on a first start, and the command entry under the console.
GUI_WELCOME_CLOSE = (465, 476)
GUI_COMMAND_ENTRY = (691, 667)


def gui_tools_missing() -> list[str]:
    """The programs the GUI tests need that are not installed (xvfb-run, xdotool)."""
    import shutil

    return [tool for tool in ("xvfb-run", "xdotool") if shutil.which(tool) is None]


class SirilGui:
    """Siril's GTK window under Xvfb with a sequence loaded, typed into with ``xdotool``.

    Headless ``siril-cli`` cannot load a sequence, and a script given with
    ``-s`` runs before a file argument is loaded, so the loaded-sequence paths
    are reached the way a user reaches them: Siril opened on ``<seq>.seq``,
    then ``pyscript ...`` typed into the command entry. Siril's log goes to
    ``gui.log`` in the working directory.
    """

    def __init__(self, siril: Siril, workdir: Path, seq_file: str, display: int) -> None:
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "gui.log"
        self.display = f":{display}"
        self.xauth = self.workdir / ".xauth"
        self.env = siril.env(DISPLAY=self.display, XAUTHORITY=str(self.xauth))
        start_env = siril.env()
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["xvfb-run", "-n", str(display), "-f", str(self.xauth), "-s", "-screen 0 1600x1000x24",
             str(siril.cli.parent / "siril"), "-d", str(self.workdir), str(self.workdir / seq_file)],
            env=start_env, cwd=str(self.workdir), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # On a first start the welcome dialog holds the sequence back until it is closed.
            loaded = r"Sequence loaded" if seq_file.endswith(".seq") else r"Reading FITS: file"
            self.wait_for(r"Searching for scripts|" + loaded, timeout=60)
            time.sleep(3)
            self._xdotool("mousemove", *map(str, GUI_WELCOME_CLOSE), "click", "1")
            self.wait_for(loaded, timeout=60)
            time.sleep(1)
        except BaseException:
            self.close()
            raise

    def _xdotool(self, *args: str) -> str:
        return subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True,
                              timeout=30).stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def type(self, command: str) -> None:
        """Type ``command`` into Siril's command entry and press Return."""
        window = self._xdotool("search", "--name", "Siril-").split()
        if window:
            self._xdotool("windowfocus", window[0])
        self._xdotool("mousemove", *map(str, GUI_COMMAND_ENTRY), "click", "1")
        self._xdotool("type", "--delay", "10", command)
        self._xdotool("key", "Return")

    def wait_for(self, pattern: str, timeout: float = 120, after: int = 0) -> re.Match:
        """Wait until the log (from character ``after``) matches ``pattern``; fail with its tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            found = re.search(pattern, text[after:], re.MULTILINE)
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.screenshot("timeout.png")
        pytest.fail(f"Siril's GUI log never showed {pattern!r} in {timeout:.0f} s:\n{self.log()[-5000:]}")

    def screenshot(self, name: str) -> None:
        """A screenshot of the screen in the working directory (when ImageMagick is installed)."""
        import shutil

        if shutil.which("import"):
            subprocess.run(["import", "-window", "root", str(self.workdir / name)], env=self.env,
                           capture_output=True, timeout=30)

    def close(self) -> None:
        """End the Siril (and Xvfb) this object started."""
        for sig in (15, 9):  # Siril may outlive SIGTERM: then SIGKILL, to the group started here
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
                time.sleep(1)
            except subprocess.TimeoutExpired:
                continue
        if not self._log.closed:
            self._log.close()


@pytest.fixture
def siril_gui(siril: Siril):
    """``open(workdir, "light_.seq")`` starts the GUI with that sequence loaded (a
    :class:`SirilGui`); closed after the test. Skips when xvfb-run or xdotool is missing."""
    missing = gui_tools_missing()
    if missing:
        pytest.skip(f"GUI tests need {' and '.join(missing)} (apt-get install -y xvfb xdotool)")
    opened: list[SirilGui] = []

    def open_gui(workdir: Path, seq_file: str) -> SirilGui:
        display = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists()
                       and not Path(f"/tmp/.X11-unix/X{n}").exists())
        gui = SirilGui(siril, workdir, seq_file, display)
        opened.append(gui)
        return gui

    yield open_gui
    for gui in opened:
        gui.close()
