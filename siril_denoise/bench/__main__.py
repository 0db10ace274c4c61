"""``python -m siril_denoise.bench``: the same as ``siril-denoise bench``."""

import sys

from . import main

sys.exit(main())
