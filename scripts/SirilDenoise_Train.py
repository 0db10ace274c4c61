# SPDX-License-Identifier: GPL-3.0-or-later
# siril-denoise 0.1.0 - Train on this sequence
# Contact: the siril-denoise developers (project issue tracker)
"""Learn a denoiser from the selected frames of the loaded sequence.

The frames, same sky with independent noise, become Noise2Noise training
pairs (aligned with Siril's registration data when the sequence has it).
The trained model is validated, its scores and training curve reported in
the log, and saved in the model library, where the Denoise image and
Denoise sequence scripts offer it for matching data.

    pyscript SirilDenoise_Train.py --name my_camera_g100 --time-budget 900
    pyscript SirilDenoise_Train.py --seq r_light_ --name my_camera_g100   # siril-cli: by name
    pyscript SirilDenoise_Train.py --help
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
    sys.exit(main("train"))
