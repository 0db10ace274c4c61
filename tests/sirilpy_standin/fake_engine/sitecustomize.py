"""Start-up hook: with this folder on ``PYTHONPATH``, the scripts get the fake engine.

Python runs ``sitecustomize`` at start-up; this registers
:mod:`fake_pipeline` as ``siril_denoise.pipeline`` for that process only.
"""

import sys

import fake_pipeline

sys.modules["siril_denoise.pipeline"] = fake_pipeline
