"""The PyQt6 dialog, offscreen: build it, set options, run quick fake work, cancel."""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PyQt6.QtWidgets")

from siril_denoise.errors import Cancelled  # noqa: E402
from siril_denoise.siril import gui  # noqa: E402
from siril_denoise.siril.jobs import JobResult  # noqa: E402
from siril_denoise.usecases import Choice  # noqa: E402
from siril_denoise.siril.settings import Settings  # noqa: E402

CHOICES = [
    Choice("auto", "Best matching saved model, else ZS-N2N"),
    Choice("model:mycam", "Model: mycam  (match 0.90)", True, "same camera"),
    Choice("model:other", "Model: other  (does not fit)", False, "other camera (ZWO vs Canon)"),
    Choice("zsn2n", "Zero-shot: ZS-N2N"),
]


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _wait(dialog, seconds=5.0):
    deadline = time.monotonic() + seconds
    while dialog.is_running() and time.monotonic() < deadline:
        QtWidgets.QApplication.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # deliver the worker's last queued signals
        QtWidgets.QApplication.processEvents()
    assert not dialog.is_running()


def test_unusable_models_are_greyed_with_the_reason(app):
    dialog = gui.DenoiseDialog("image", Settings(choice="model:other"), CHOICES, lambda *a: None)
    box = dialog.choice_box
    item = box.model().item(2)
    assert not item.isEnabled()
    assert "other camera" in box.itemData(2, gui.Qt.ItemDataRole.ToolTipRole)
    assert box.currentData() == "auto", "a remembered model that no longer fits is not preselected"


def test_options_follow_the_widgets(app):
    dialog = gui.DenoiseDialog("sequence", Settings(), CHOICES, lambda *a: None)
    dialog.choice_box.setCurrentIndex(1)
    dialog.strength.setValue(65)
    dialog.gpu.setChecked(False)
    dialog.tile.setValue(128)
    dialog.prefix.setText("nr_")
    opts = dialog.options()
    assert (opts.choice, opts.strength, opts.use_gpu, opts.tile, opts.prefix) == (
        "model:mycam", 0.65, False, 128, "nr_")
    assert dialog.settings().prefix == "nr_"


def test_run_shows_the_report(app):
    seen = {}

    def work(opts, progress, should_cancel):
        seen["choice"] = opts.choice
        progress(0.5, "half way")
        return JobResult("quality report: noise 3.1x lower", ["background bias 0.01"])

    dialog = gui.DenoiseDialog("image", Settings(), CHOICES, work)
    dialog.choice_box.setCurrentIndex(3)
    dialog.start()
    _wait(dialog)
    assert seen["choice"] == "zsn2n"
    text = dialog.log_view.toPlainText()
    assert "noise 3.1x lower" in text and "background bias" in text
    assert dialog.progress.value() == 1000 and dialog.run_button.isEnabled()


def test_cancel_stops_the_work(app):
    started = []

    def work(opts, progress, should_cancel):
        started.append(True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if should_cancel():
                raise Cancelled()
            time.sleep(0.01)
        return JobResult("finished without noticing the cancel")

    dialog = gui.DenoiseDialog("train", Settings(), None, work)
    dialog.start()
    while not started:
        QtWidgets.QApplication.processEvents()
    t0 = time.monotonic()
    dialog.cancel()
    _wait(dialog, 5)
    assert time.monotonic() - t0 < 2
    assert dialog.status.text() == "Cancelled."
    assert dialog.last_result is None
    assert "Cancelled" in dialog.log_view.toPlainText()


def test_a_failure_is_shown_in_a_message_box(app, monkeypatch):
    boxes = []
    monkeypatch.setattr(gui.QMessageBox, "warning", lambda parent, title, text: boxes.append(text))

    def work(opts, progress, should_cancel):
        from siril_denoise.errors import ModelError

        raise ModelError("Model mycam expects 1 channel, the image has 3.")

    dialog = gui.DenoiseDialog("image", Settings(), CHOICES, work)
    dialog.start()
    _wait(dialog)
    assert boxes == ["Model mycam expects 1 channel, the image has 3."]
    assert dialog.status.text() == "Failed."
