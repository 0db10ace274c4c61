"""The first run of a fresh Siril user: an empty Siril venv, one `pyscript`, a denoised image.

Issue 9: the Image script installed scipy, onnx, astropy and the training
packages, trained for a minute, then stopped on ``No module named
'onnxruntime'`` while Siril said "Script execution finished successfully".
"""

from __future__ import annotations

import re

import numpy as np

from conftest import background_noise, read_fits

#: What the scripts install into Siril's venv (pip names): the engine, onnxruntime (through
#: ONNXHelper), torch (through TorchHelper) and the training extras.
EXPECTED = ("scipy", "onnx", "astropy", "xisf", "tqdm", "platformdirs", "onnxruntime", "torch",
            "onnxscript", "astroalign", "scikit-image", "sep", "matplotlib")


def test_first_run_installs_everything_it_needs_and_says_what_and_on_which_device(first_run, siril):
    run = first_run
    run.assert_no_traceback()
    assert not run.errors(), "\n".join(run.errors())
    installed = " ".join(run.lines(r"^Installed: "))
    for package in EXPECTED:
        assert re.search(rf"(^|[ ,:]){re.escape(package)} \d", installed), (package, installed)
    # onnxruntime is in place before anything is trained
    lines = run.lines()
    first_torch = next(i for i, line in enumerate(lines) if line.startswith("Installing PyTorch"))
    onnx_ok = next(i for i, line in enumerate(lines) if re.search(r"^Installed: .*onnxruntime \d", line))
    assert onnx_ok < first_torch
    # which device
    assert run.lines(r"^Inference providers: (\w+ExecutionProvider, )*CPUExecutionProvider$"), \
        run.lines("providers")
    assert run.lines(r"^Training on: (cpu|cuda|mps|xpu)")
    # no provider self-test, no Azure "device", no pip chatter in Siril's log
    assert not run.lines("Provider Tester|AzureExecutionProvider|^Collecting |Downloading ")
    # the venv really holds them
    for module in ("onnxruntime", "torch", "scipy", "skimage", "sep", "onnxscript"):
        assert list((siril.venv / "lib").glob(f"python3*/site-packages/{module}*")), module
    # and the image was denoised
    before, _ = read_fits(run.workdir / "mono16.fit")
    after, _ = read_fits(run.workdir / "first_run_out.fit")
    assert after.dtype == np.uint16 and after.shape == before.shape
    assert background_noise(after) < 0.8 * background_noise(before)
