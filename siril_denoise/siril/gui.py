"""The PyQt6 dialog of the Siril scripts: pick, set, run, watch, cancel.

One dialog serves the three scripts. For the image and sequence scripts it
offers the library's models ranked for the data (those that do not fit are
greyed out, with the reason as a tooltip) and the zero-shot methods; for the
training script a model name, a network and a time budget. Then a strength
slider, a GPU switch, an *Advanced* group (tile size, overlap, time budget,
prefix), a progress bar, Run / Cancel / Close, and a log pane that shows the
quality report at the end.

The work runs in a worker thread (Siril's own Stop button does not stop a
script); Cancel sets a flag the engine polls between tiles, steps and frames.
The dialog knows nothing about Siril: it is given a ``work(options,
progress, should_cancel) -> JobResult`` callable, which the tests replace.
Plain Qt widgets and the default style, so it sits well beside Siril's own.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import replace
from typing import Any, Callable

from PyQt6.QtCore import QThread, Qt, pyqtSignal
from PyQt6.QtGui import QStandardItemModel
from PyQt6.QtWidgets import (
    QApplication, QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QGroupBox,
    QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
    QSlider, QSpinBox, QVBoxLayout, QWidget,
)

from ..errors import Cancelled, DenoiseError
from ..usecases import MAX_TILE, MIN_TILE, Choice
from .jobs import JobOptions, JobResult
from .settings import TRAIN_NETWORKS, Settings

Work = Callable[[JobOptions, Callable[[float, str], None], Callable[[], bool]], JobResult]


class Worker(QThread):
    """Runs ``work`` off the GUI thread and reports back through signals."""

    progressed = pyqtSignal(float, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str, bool)  # message, was it a cancel

    def __init__(self, work: Work, options: JobOptions) -> None:
        super().__init__()
        self.work = work
        self.options = options
        self.cancel_event = threading.Event()

    def run(self) -> None:  # noqa: D102 - QThread entry point
        try:
            result = self.work(self.options, self.progressed.emit, self.cancel_event.is_set)
        except Cancelled as exc:
            self.failed.emit(str(exc), True)
        except DenoiseError as exc:
            self.failed.emit(str(exc), False)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog rather than lost in a thread
            self.failed.emit(f"Unexpected error (please report it): {exc!r}\n{traceback.format_exc()}",
                             False)
        else:
            self.succeeded.emit(result)


class DenoiseDialog(QDialog):
    """The dialog; :meth:`settings` gives the choices to remember when it closes."""

    def __init__(self, job: str, settings: Settings, choices: list[Choice] | None, work: Work,
                 *, title: str = "siril-denoise", description: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.work = work
        self.worker: Worker | None = None
        self.last_result: JobResult | None = None
        self._initial = settings.normalised()
        self.setWindowTitle(title)
        self.setMinimumWidth(520)

        layout = QVBoxLayout(self)
        if description:
            intro = QLabel(description)
            intro.setWordWrap(True)
            layout.addWidget(intro)

        form = QFormLayout()
        layout.addLayout(form)
        s = self._initial
        self.choice_box: QComboBox | None = None
        if job == "train":
            self.name_edit = QLineEdit()
            self.name_edit.setPlaceholderText("automatic (camera, gain, exposure, date)")
            form.addRow("Model name:", self.name_edit)
            self.net_box = QComboBox()
            self.net_box.addItems(list(TRAIN_NETWORKS))
            self.net_box.setCurrentText(s.train_net)
            form.addRow("Network:", self.net_box)
        else:
            self.choice_box = QComboBox()
            self._fill_choices(choices or [], s.choice)
            form.addRow("Model or method:", self.choice_box)
            self.strength = QSlider(Qt.Orientation.Horizontal)
            self.strength.setRange(0, 100)
            self.strength.setValue(round(s.strength * 100))
            self.strength_label = QLabel()
            self.strength.valueChanged.connect(self._show_strength)
            self._show_strength(self.strength.value())
            row = QHBoxLayout()
            row.addWidget(self.strength)
            row.addWidget(self.strength_label)
            form.addRow("Strength:", row)
        self.gpu = QCheckBox("Use the GPU when available")
        self.gpu.setChecked(s.use_gpu)
        form.addRow("", self.gpu)

        self.advanced = QGroupBox("Advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        adv = QFormLayout(self.advanced)
        # Training is counted in steps (same model however busy the machine is); the
        # time limit is only an optional cap, and a model it stops is flagged.
        self.steps = QSpinBox()
        self.steps.setRange(0, 1_000_000)
        self.steps.setSingleStep(100)
        self.steps.setSpecialValueText("method default")
        self.time_budget = QDoubleSpinBox()
        self.time_budget.setRange(0.0, 86400.0)
        self.time_budget.setSuffix(" s")
        self.time_budget.setSpecialValueText("no limit")
        if job == "train":
            self.steps.setValue(s.train_steps)
            self.time_budget.setValue(s.train_time_budget)
            adv.addRow("Training steps:", self.steps)
            adv.addRow("Time limit:", self.time_budget)
        else:
            self.steps.setValue(s.steps)
            self.time_budget.setValue(s.time_budget)
            adv.addRow("Zero-shot training steps:", self.steps)
            adv.addRow("Zero-shot time limit:", self.time_budget)
            self.tile = QSpinBox()
            self.tile.setRange(MIN_TILE, MAX_TILE)
            self.tile.setSingleStep(MIN_TILE)
            self.tile.setValue(s.tile)
            adv.addRow("Tile size:", self.tile)
            self.overlap = QSpinBox()
            self.overlap.setRange(0, 1024)
            self.overlap.setValue(s.overlap)
            adv.addRow("Tile overlap:", self.overlap)
        if job == "sequence":
            self.prefix = QLineEdit(s.prefix)
            adv.addRow("New sequence prefix:", self.prefix)
            self.load_result = QCheckBox("Load the new sequence when done")
            self.load_result.setChecked(s.load_result)
            adv.addRow("", self.load_result)
        layout.addWidget(self.advanced)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Ready.")
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMinimumHeight(140)
        layout.addWidget(self.log_view)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.run_button = QPushButton("Train" if job == "train" else "Denoise")
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.cancel_button.setEnabled(False)
        for b in (self.run_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.run_button.setDefault(True)

    # -- options ----------------------------------------------------------

    def _fill_choices(self, choices: list[Choice], current: str) -> None:
        box = self.choice_box
        assert box is not None
        model = box.model()
        for i, choice in enumerate(choices):
            box.addItem(choice.label, choice.key)
            box.setItemData(i, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
            if not choice.usable and isinstance(model, QStandardItemModel):
                item = model.item(i)
                item.setEnabled(False)
        keys = [c.key for c in choices]
        usable = [c.key for c in choices if c.usable]
        pick = current if current in usable else (usable[0] if usable else None)
        if pick is not None:
            box.setCurrentIndex(keys.index(pick))

    def _show_strength(self, value: int) -> None:
        self.strength_label.setText(f"{value / 100:.2f}")

    def settings(self) -> Settings:
        """The current choices, to be remembered."""
        s = replace(self._initial, use_gpu=self.gpu.isChecked())
        if self.job == "train":
            s.train_net = self.net_box.currentText()
            s.train_time_budget = self.time_budget.value()
            s.train_steps = self.steps.value()
        else:
            s.choice = self.choice_box.currentData() or "auto"
            s.strength = self.strength.value() / 100
            s.time_budget = self.time_budget.value()
            s.steps = self.steps.value()
            s.tile, s.overlap = self.tile.value(), self.overlap.value()
        if self.job == "sequence":
            s.prefix = self.prefix.text().strip() or Settings.prefix
            s.load_result = self.load_result.isChecked()
        return s.normalised()

    def options(self) -> JobOptions:
        """The current choices as :class:`JobOptions` for the job."""
        opts = self.settings().options(self.job)
        if self.job == "train":
            opts.name = self.name_edit.text().strip() or None
        return opts

    # -- running ----------------------------------------------------------

    def append_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def start(self) -> None:
        """Start the work in a worker thread."""
        if self.worker is not None and self.worker.isRunning():
            return
        self.last_result = None
        self.worker = Worker(self.work, self.options())
        self.worker.progressed.connect(self._on_progress)
        self.worker.succeeded.connect(self._on_success)
        self.worker.failed.connect(self._on_failure)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("Working...")
        self.append_log("Started.")
        self.worker.start()

    def cancel(self) -> None:
        """Ask the work to stop at the next tile, step or frame."""
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel_event.set()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling...")

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(min(max(fraction, 0.0), 1.0) * 1000)))
        self.status.setText(message)

    def _on_success(self, result: JobResult) -> None:
        self.last_result = result
        self.progress.setValue(1000)
        self.status.setText("Done.")
        self.append_log(result.text)
        for warning in result.warnings:
            self.append_log(f"Warning: {warning}")

    def _on_failure(self, message: str, cancelled: bool) -> None:
        self.status.setText("Cancelled." if cancelled else "Failed.")
        self.append_log(message)
        if not cancelled:
            QMessageBox.warning(self, self.windowTitle(), message.splitlines()[0])

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        if self.is_running():
            self.cancel()
            self.worker.wait()
        super().closeEvent(event)


def run_dialog(job: str, settings: Settings, choices: list[Choice] | None, work: Work, *,
               title: str, description: str) -> Settings:
    """Show the dialog until the user closes it; returns the settings to remember."""
    app = QApplication.instance() or QApplication([])
    dialog = DenoiseDialog(job, settings, choices, work, title=title, description=description)
    dialog.show()
    dialog.raise_()
    dialog.exec()
    result = dialog.settings()
    del app
    return result
