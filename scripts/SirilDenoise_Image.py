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

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
from siril_denoise.siril import start  # noqa: E402  (<here>/siril_denoise installed, <here>/.. in a checkout)

sys.exit(start(__file__, "image", lambda sirilpy: sirilpy.check_module_version(">=1.0.8")))
