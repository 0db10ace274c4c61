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
    sys.exit(main("sequence"))
