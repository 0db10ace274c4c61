"""siril-denoise: self-supervised denoisers learned from your own astro frames.

The engine is numpy in, numpy out. Only :mod:`siril_denoise.siril` imports
``sirilpy``; everything else runs from the command line or any host.
"""

__version__ = "0.1.0"
