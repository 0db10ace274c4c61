# SPDX-License-Identifier: GPL-3.0-or-later
# siril-denoise 0.1.0 - Denoise image
# Contact: the siril-denoise developers (project issue tracker)
"""Denoise the image loaded in Siril with a model learned from your own frames.

Picks a saved model (library models that fit the image come first) or a
zero-shot method trained on this image (ZS-N2N, Neighbor2Neighbor), applies
it at the chosen strength and writes the result back; Edit > Undo restores
the original. From the Scripts menu it opens a dialog; headless, or with
flags, it runs directly:

    pyscript SirilDenoise_Image.py --model NAME --strength 0.8 --nogpu
    pyscript SirilDenoise_Image.py --help
"""

import os
import sys

# The engine package travels with the script: <here>/siril_denoise when
# installed, <here>/../siril_denoise in a source checkout.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.dirname(_HERE), _HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from siril_denoise.siril import outside_siril, siril_too_old  # noqa: E402  (no sirilpy inside)

try:
    import sirilpy  # noqa: E402
except ImportError:  # not started by Siril, whose Python environment provides sirilpy
    sys.exit(outside_siril(__file__))
if not sirilpy.check_module_version(">=1.0.8"):
    sys.exit(siril_too_old())

from siril_denoise.siril.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("image"))
