"""siril-denoise inside Siril: the adapter, the jobs, the dialog and the installer.

Only :mod:`siril_denoise.siril.adapter` imports ``sirilpy`` (the entry
scripts in ``scripts/`` also call ``sirilpy.check_module_version`` with a
literal, which Siril looks for). :mod:`.jobs` holds what the three scripts
do, :mod:`.runner` what every script does around it (connect, install,
dialog or flags, errors), :mod:`.gui` the PyQt6 dialog, :mod:`.settings` the
remembered choices and :mod:`.install` the copy into Siril's script folder.
"""

import os
import sys


def outside_siril(script: str) -> int:
    """Say that ``script`` (an entry script's path) needs Siril, on stdout; returns exit code 1.

    Called by the entry scripts when ``sirilpy`` cannot be imported, which
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
