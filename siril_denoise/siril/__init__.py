"""siril-denoise inside Siril: the adapter, the jobs, the dialog and the installer.

Only :mod:`siril_denoise.siril.adapter` uses ``sirilpy`` (:func:`start`
imports it only to learn whether Siril started the script, and the entry
scripts in ``scripts/`` call ``sirilpy.check_module_version`` with a
literal, which Siril looks for). :mod:`.jobs` words what the three scripts
do (the doing is :mod:`siril_denoise.usecases`), :mod:`.runner` what every
script does around it (connect, install, dialog or flags, errors),
:mod:`.gui` the PyQt6 dialog, :mod:`.settings` the remembered choices and
:mod:`.install` the copy into Siril's script folder.
"""

import os
import sys
from typing import Any, Callable


def outside_siril(script: str) -> int:
    """Say that ``script`` (an entry script's path) needs Siril, on stdout; returns exit code 1.

    Called by :func:`start` when ``sirilpy`` cannot be imported, which
    means they were not started by Siril (whose Python environment has it).
    """
    print(f"ERROR: siril-denoise: {os.path.basename(script)} runs inside Siril (Scripts menu, or "
          "`pyscript` in Siril's command line). Outside Siril, use the `siril-denoise` command.",
          file=sys.stdout, flush=True)
    return 1


def siril_too_old() -> int:
    """Say that this Siril is older than 1.4.0 (sirilpy 1.0.8); returns exit code 1."""
    print("ERROR: siril-denoise needs sirilpy 1.0.8 or newer (Siril 1.4.0 or newer): please update "
          "Siril.", file=sys.stdout, flush=True)
    return 1


def start(script: str, job: str, version_ok: Callable[[Any], bool]) -> int:
    """What an entry script does: check that Siril started it and is new enough, then run ``job``.

    ``script`` is the entry script's path; ``version_ok(sirilpy)`` is the
    script's own ``sirilpy.check_module_version(">=1.0.8")`` call (Siril
    finds that double-quoted literal in the script's text). Returns the exit
    status of :func:`siril_denoise.siril.runner.main`, or 1.
    """
    try:
        import sirilpy
    except ImportError:  # not started by Siril, whose Python environment provides sirilpy
        return outside_siril(script)
    if not version_ok(sirilpy):
        return siril_too_old()
    from .runner import main

    return main(job)
