"""Put the entry scripts where Siril looks, with the engine package beside them.

Siril lists the ``.py`` files of each script folder in its Scripts menu and
does not look into sub-folders. So the three entry scripts go straight into
the folder, and a copy of the ``siril_denoise`` package goes into
``<folder>/siril_denoise/``, where the scripts find it and the menu ignores
it. A small record (``.siril-denoise-install.json``) lists what was
installed, so that ``uninstall`` removes exactly that and nothing else.

The default folder is the user's own script folder: ``~/.siril/scripts`` on
Linux and macOS, ``%APPDATA%\\siril\\scripts`` on Windows (both are in
Siril's default search list; any folder added in Preferences > Scripts works
too).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ..errors import DenoiseError

RECORD_NAME = ".siril-denoise-install.json"
PACKAGE_NAME = "siril_denoise"
ENTRY_SCRIPTS = ("SirilDenoise_Image.py", "SirilDenoise_Sequence.py", "SirilDenoise_Train.py")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def default_scripts_dir() -> Path:
    """The user's Siril script folder for this platform."""
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(appdata) / "siril" / "scripts"
    return Path.home() / ".siril" / "scripts"


def package_dir() -> Path:
    """The ``siril_denoise`` package being installed (this very copy)."""
    return Path(__file__).resolve().parent.parent


def source_scripts_dir() -> Path:
    """The ``scripts/`` folder of the checkout this package comes from."""
    candidate = package_dir().parent / "scripts"
    if all((candidate / name).is_file() for name in ENTRY_SCRIPTS):
        return candidate
    raise DenoiseError(
        f"The Siril entry scripts were not found next to the package ({candidate}). Install "
        "from a source checkout (pip install -e .), or copy scripts/*.py and the siril_denoise "
        "folder into Siril's script folder by hand.")


def install(scripts_dir: Path | None = None, *, uninstall: bool = False) -> list[str]:
    """Install (or remove) the Siril scripts; returns one message per thing done."""
    target = Path(scripts_dir).expanduser() if scripts_dir else default_scripts_dir()
    if uninstall:
        return _uninstall(target)
    source = source_scripts_dir()
    if target.resolve() == source.resolve():
        raise DenoiseError(f"{target} is the source checkout's own scripts folder; choose "
                           "Siril's script folder instead.")
    previous = _read_record(target)
    ours = set((previous or {}).get("files", []))
    # Every check before the first write: a refusal leaves the folder as it was.
    foreign = [target / name for name in (*ENTRY_SCRIPTS, PACKAGE_NAME + "/")
               if (target / name.rstrip("/")).exists() and name not in ours]
    if foreign:
        raise DenoiseError("Nothing was installed: " + "; ".join(
            f"{path} already exists and was not installed by siril-denoise" for path in foreign)
            + ". Move it away first.")
    messages: list[str] = []
    if previous is not None:
        messages += _uninstall(target, quiet=True)
    installed: list[str] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in ENTRY_SCRIPTS:
            shutil.copyfile(source / name, target / name)
            installed.append(name)
            messages.append(f"Installed {target / name}")
        pkg_dest = target / PACKAGE_NAME
        installed.append(PACKAGE_NAME + "/")
        shutil.copytree(package_dir(), pkg_dest, ignore=_SKIP)
        messages.append(f"Installed the engine package in {pkg_dest}")
        _write_record(target, installed)
    except OSError as exc:
        _remove(target, installed)  # a half install would be unknown to --uninstall
        raise DenoiseError(f"Could not install into {target}: {exc.strerror or exc}. "
                           "Nothing was left behind.") from exc
    messages.append("Restart Siril (or run `reloadscripts`): the scripts appear in the Scripts "
                    "menu as SirilDenoise_Image, SirilDenoise_Sequence and SirilDenoise_Train.")
    return messages


def _read_record(target: Path) -> dict | None:
    path = target / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DenoiseError(f"{path} is unreadable ({exc}); remove the siril-denoise files from "
                           f"{target} by hand.") from exc
    return record if isinstance(record, dict) else None


def _write_record(target: Path, files: list[str]) -> None:
    from .. import __version__

    record = {"name": "siril-denoise", "version": __version__, "files": files}
    (target / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _uninstall(target: Path, *, quiet: bool = False) -> list[str]:
    record = _read_record(target)
    if record is None:
        return [] if quiet else [f"Nothing to uninstall: siril-denoise is not installed in {target}."]
    messages = [f"Removed {path}" for path in _remove(target, record.get("files", []))]
    (target / RECORD_NAME).unlink()
    return [] if quiet else messages


def _remove(target: Path, names: list[str]) -> list[Path]:
    """Delete the recorded ``names`` from ``target``; returns what was removed."""
    removed = []
    for name in names:
        # Only plain names recorded by install(): never follow a path out of the folder.
        clean = name.rstrip("/")
        if not clean or "/" in clean or "\\" in clean or clean in (".", ".."):
            continue
        path = target / clean
        if name.endswith("/") and path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed
