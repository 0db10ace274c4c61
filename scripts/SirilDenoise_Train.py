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

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
from siril_denoise.siril import start  # noqa: E402  (<here>/siril_denoise installed, <here>/.. in a checkout)

sys.exit(start(__file__, "train", lambda sirilpy: sirilpy.check_module_version(">=1.0.8")))
