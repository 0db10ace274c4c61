# SPDX-License-Identifier: GPL-3.0-or-later
# siril-denoise 0.1.0 - Denoise sequence
# Contact: the siril-denoise developers (project issue tracker)
"""Denoise every selected frame of the loaded sequence into a new sequence.

Each selected frame goes through a saved model (or a zero-shot method
trained on that frame) and is written as ``<prefix><sequence><NNNNN>.fit``
(prefix ``dn_`` by default); the new sequence is created at the end and
loaded. The original frames are never changed; a cancel removes the frames
already written. Needs a sequence of FITS files (not SER or FITSEQ).

    pyscript SirilDenoise_Sequence.py --model NAME --prefix dn_
    pyscript SirilDenoise_Sequence.py --seq light_ --model NAME   # siril-cli: by name
    pyscript SirilDenoise_Sequence.py --help
"""

import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
from siril_denoise.siril import start  # noqa: E402  (<here>/siril_denoise installed, <here>/.. in a checkout)

sys.exit(start(__file__, "sequence", lambda sirilpy: sirilpy.check_module_version(">=1.0.8")))
