"""The three Siril scripts on the use-case layer, and the words they leave in Siril's log.

- :func:`denoise_loaded_image`: :func:`siril_denoise.usecases.denoise_image`
  on the image loaded in Siril, written back undoably;
- :func:`denoise_loaded_sequence`: :func:`siril_denoise.usecases.denoise_frames`
  on the selected frames, then the new prefixed sequence is created (and
  loaded where Siril can); a cancel or an error removes the frames this run
  wrote;
- :func:`train_on_loaded_sequence`: :func:`siril_denoise.usecases.train_model`
  on the selected frames; the model, its training curve and the record of the
  frames used are saved in the library.

A job gets a host (:class:`siril_denoise.siril.adapter.SirilHost`, or
:class:`siril_denoise.siril.seqfile.SeqFileHost` for ``--seq``), its
:class:`JobOptions`, ``progress(fraction, message)`` and ``should_cancel()``.
Every decision is the layer's; nothing here imports ``sirilpy``, the engine
or the training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from .. import usecases
from ..errors import Cancelled, DenoiseError
from ..usecases import FrameHost, ImageHost, Options

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]


@dataclass
class JobOptions(Options):
    """The layer's :class:`~siril_denoise.usecases.Options`, plus ``load_result``: load the new
    sequence in Siril when it can."""

    load_result: bool = True


@dataclass
class JobResult:
    """What a finished job reports: text for the log, and what it made."""

    text: str
    warnings: list[str] = field(default_factory=list)
    model_name: str | None = None
    sequence: str | None = None


class SequenceHost(FrameHost, Protocol):
    """A :class:`~siril_denoise.usecases.FrameHost` that gathers written frames into a Siril sequence."""

    def working_dir(self) -> Path:
        """Siril's working directory, where the new frames are written."""

    def create_sequence(self, root: str) -> bool:
        """Create ``<root>.seq`` from the frames written; False when Siril found none."""

    def can_load_sequence(self) -> bool:
        """Whether Siril can load a sequence here (not under siril-cli)."""

    def load_sequence(self, root: str) -> bool:
        """Load the new sequence; False (logged) when Siril cannot."""


class Watched:
    """``host`` with its progress sent to ``progress`` and its cancel asked of ``should_cancel``."""

    def __init__(self, host: usecases.Feedback, progress: Progress, should_cancel: ShouldCancel) -> None:
        self._host, self._progress, self._cancel = host, progress, should_cancel

    def progress(self, fraction: float, message: str) -> None:
        self._progress(fraction, message)

    def should_cancel(self) -> bool:
        return bool(self._cancel())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


def _report_text(result: Any) -> str:
    report = getattr(result, "report", None)
    if report is None:
        return ""
    return report.as_text() if hasattr(report, "as_text") else str(report)


def denoise_loaded_image(host: ImageHost, opts: JobOptions) -> JobResult:
    """Denoise the loaded image and write it back (one undo step)."""
    outcome = usecases.denoise_image(host, opts)
    head = (f"Denoised the image with {outcome.denoiser.label} (strength {opts.strength:.2f}). "
            "Edit > Undo restores it.")
    return JobResult("\n".join(x for x in (head, _report_text(outcome.result)) if x), outcome.warnings)


def denoise_loaded_sequence(host: SequenceHost, opts: JobOptions) -> JobResult:
    """Denoise every selected frame into ``<prefix><seqname>`` and create that sequence."""
    outcome = usecases.denoise_frames(host, opts)
    info, root = outcome.info, opts.prefix + outcome.info.name
    try:
        if host.should_cancel():
            raise Cancelled()
        if not host.create_sequence(root):
            raise DenoiseError(f"Siril did not create the sequence {root} (no files found in the "
                               "working directory). Check the working directory and free disk space.")
    except BaseException:
        host.discard_frames(outcome.written)
        raise
    # Not is_cli(): it is True for a pyscript typed in the GUI too, where loading works.
    if opts.load_result and host.can_load_sequence():
        host.load_sequence(root)
    text = (f"Wrote sequence '{root}' ({len(info.selected)} frames) in {host.working_dir()}; "
            f"the original frames were not changed.")
    return JobResult(text, outcome.warnings, sequence=root)


def train_on_loaded_sequence(host: FrameHost, opts: JobOptions) -> JobResult:
    """Train on the selected frames; the model, its curve and its frame list go to the library."""
    outcome = usecases.train_model(host, opts)
    entry, notes = outcome.entry, outcome.warnings
    lines = [f"Saved model '{entry.name}' in {Path(entry.path).parent}"
             + (f", flagged: {'; '.join(notes)}" if notes else "."),
             str(getattr(outcome.trained, "summary", "") or "")]
    kept = entry.training_files
    if kept:
        lines.append("Training curve and frames used: " + ", ".join(str(p) for p in kept.values()))
    lines.append("The Denoise image and Denoise sequence scripts now offer it for matching data.")
    return JobResult("\n".join(x for x in lines if x), notes, model_name=entry.name)


JOBS: dict[str, Callable[..., JobResult]] = {
    "image": denoise_loaded_image,
    "sequence": denoise_loaded_sequence,
    "train": train_on_loaded_sequence,
}


def run_job(job: str, host: ImageHost | SequenceHost, opts: JobOptions, progress: Progress,
            should_cancel: ShouldCancel) -> JobResult:
    """Run one of :data:`JOBS`, with ``progress`` and ``should_cancel`` as the host's."""
    return JOBS[job](Watched(host, progress, should_cancel), opts)
