"""What the ``siril-denoise`` command shows on the terminal: lines, logs, progress bars, Ctrl-C.

- :class:`Console`: the command's own lines on stdout (``info`` hidden by
  ``--quiet``, ``summary`` always shown);
- :func:`setup_logging`: engine log records on stderr as ``warning: ...``;
- :class:`Bar`: a progress bar fed by the engine's ``progress(fraction, message)``;
- :class:`CtrlC`: the first Ctrl-C asks for a clean cancel, a second stops at once;
- :class:`Terminal`: all of these as the use cases' ``Feedback`` host
  (:mod:`siril_denoise.usecases`): words, progress and cancel.

All of them write through tqdm, so a line never breaks a bar. tqdm is imported
when first used: ``siril-denoise --help`` stays fast.
"""

from __future__ import annotations

import logging
import signal
import statistics
import sys
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("siril_denoise.cli")


class Console:
    """Where the command's own messages go: stdout, through tqdm so bars stay intact.

    ``info`` lines are dropped with ``--quiet``; ``summary`` lines always print.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, text: str = "") -> None:
        """A line of detail (hidden by --quiet)."""
        if not self.quiet:
            self.summary(text)

    def summary(self, text: str = "") -> None:
        """A line of the final summary (always shown)."""
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)

    def training_notes(self, metadata: dict | None) -> None:
        """The training's throughput (detail) and its plain-language warnings (always shown).

        ``metadata`` is a model's metadata dict; its ``training`` entry holds
        ``steps``, ``steps_per_s``, ``pixels_per_s`` (pixels/s), ``mfu`` (a
        fraction in [0, 1]), ``threads`` and ``notes`` (warnings such as
        "cut short by the time limit").
        """
        tr = metadata.get("training", {}) if metadata else {}
        if tr.get("steps_per_s"):
            self.info(f"Training: {tr.get('steps')} steps, {tr['steps_per_s']:.2f} steps/s, "
                      f"{tr.get('pixels_per_s', 0) / 1e6:.2g} Mpx/s, {tr.get('mfu', 0):.0%} of this machine's "
                      f"matmul rate on {tr.get('threads')} thread(s)")
        for note in tr.get("notes", []):
            self.summary(f"warning: {note}")

    def trained(self, outcome: Any, save_model: Path | None) -> None:
        """What a training run made (a use-case TrainOutcome): scores, notes, where the model and its
        validation curve are (``--out`` and the copy kept beside the model in the library)."""
        trained, entry = outcome.trained, outcome.entry
        self.summary(trained.summary)
        self.training_notes(trained.metadata)
        if entry is not None:
            self.summary(f"Saved in the library {Path(entry.path).parent} as {entry.name}")
        if save_model is not None or entry is None:
            self.summary(f"Model file: {save_model or trained.onnx_path}")
        kept = entry.training_files if entry is not None else {}
        curve = [str(p) for p in (trained.history_csv, trained.plot_png, kept.get("history"), kept.get("curve"))
                 if p is not None and Path(p).exists()]
        if curve:
            self.info(f"Validation curve: {', '.join(curve)}")

    def applied(self, outcome: Any, pairs: list[tuple[Path, Path]], out_dir: Path) -> None:
        """Per frame written (``pairs`` of input and output files), its noise figures and warnings; then
        the summary: frames, model and median noise reduction (from a use-case FramesOutcome)."""
        warned = 0
        for (src, dst), report in zip(pairs, outcome.reports):
            self.info(f"{src.name} → {dst.name}: {short_report(report)}")
            for w in report.warnings:
                warned += 1
                self.info(f"  warning: {w}")
        reductions = [r.noise_reduction_overall for r in outcome.reports]
        med = statistics.median(reductions) if reductions else float("nan")
        seen = "(run without -q to see them)" if self.quiet else "above"
        self.summary(f"Denoised {len(pairs)} frame(s) into {out_dir} with {outcome.denoiser.label}: "
                     f"median noise {med:.1f}× lower" + (f"; {warned} warning(s) {seen}" if warned else ""))


def work_text(steps: int, seed: int, time_budget: float | None) -> str:
    """``800 steps, seed 0`` or ``300 steps, seed 0, at most 60 s`` (``time_budget`` in seconds)."""
    cap = "" if time_budget is None else f", at most {time_budget:g} s"
    return f"{steps} steps, seed {seed}{cap}"


def short_report(report: Any) -> str:
    """One line from a quality report: background noise before -> after, the reduction, the warnings."""
    unit = " ADU" if report.saturation > 1.0 else ""
    text = (f"background noise {report.noise_in_overall:.4g} → {report.noise_out_overall:.4g}{unit} "
            f"({report.noise_reduction_overall:.1f}× lower)")
    if report.warnings:
        text += f"; {len(report.warnings)} warning{'s' if len(report.warnings) > 1 else ''}"
    return text


class TqdmHandler(logging.Handler):
    """Log records on stderr as ``warning: ...`` lines that do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class Formatter(logging.Formatter):
    """``level: message``; with ``verbose`` > 0, ``level [logger]: message`` and tracebacks."""

    def __init__(self, verbose: int) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and self.verbose:
            text += "\n" + self.formatException(record.exc_info)
        if self.verbose:
            return f"{record.levelname.lower()} [{record.name}]: {text}"
        return f"{record.levelname.lower()}: {text}"


def setup_logging(quiet: bool, verbose: int) -> None:
    """Engine logs on stderr: warnings by default, errors only with --quiet, -v INFO, -vv DEBUG."""
    if verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.WARNING
    logger = logging.getLogger("siril_denoise")
    for h in list(logger.handlers):
        if isinstance(h, TqdmHandler):
            logger.removeHandler(h)
    handler = TqdmHandler()
    handler.setFormatter(Formatter(verbose))
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(level)


class Bar:
    """A tqdm bar fed by the engine's ``progress(fraction, message)`` callbacks (fraction in [0, 1])."""

    def __init__(self, desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        n = int(round(min(max(float(fraction), 0.0), 1.0) * 1000))
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)
        self._bar.set_postfix_str(str(message)[:70])

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.close()


class CtrlC:
    """The first Ctrl-C asks the engine to cancel cleanly; a second one stops at once.

    Use as a context manager; the object itself is the ``should_cancel()``
    callback the engine polls between steps, tiles and frames. The handler in
    place before is put back on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nCancelling at the next step (press Ctrl-C again to stop at once)...\n")

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Terminal:
    """The terminal as a use-case host's ``Feedback``: messages, one progress bar, Ctrl-C.

    Use as a context manager: inside it, Ctrl-C requests a clean cancel
    (:meth:`should_cancel`) and :meth:`progress` feeds a bar named ``desc``
    (shown from the first call on). Hosts used together share one ``cancel``
    (the first one's). ``before_training`` is called once, when the use case
    is about to train (after every check), to say what the training will do.
    """

    def __init__(self, con: Console, desc: str, *, cancel: CtrlC | None = None,
                 before_training: Callable[[], None] | None = None) -> None:
        self.con = con
        self.desc = desc
        self.before_training = before_training
        self.cancel = cancel or CtrlC()
        self._own_cancel = cancel is None
        self._bar: Bar | None = None

    def __enter__(self) -> Terminal:
        if self._own_cancel:
            self.cancel.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__()
            self._bar = None
        if self._own_cancel:
            self.cancel.__exit__()

    def log(self, message: str, level: str = "info") -> None:
        """``info``/``ok`` as lines on stdout (hidden by --quiet); ``warning``/``error`` on stderr."""
        if level in ("warning", "error"):
            log.log(logging.WARNING if level == "warning" else logging.ERROR, "%s", message)
        else:
            self.con.info(message)

    def progress(self, fraction: float, message: str) -> None:
        """``fraction`` in [0, 1] of the whole run, shown on the bar."""
        if self._bar is None:
            self._bar = Bar(self.desc, not self.con.quiet)
        self._bar(fraction, message)

    def should_cancel(self) -> bool:
        return self.cancel()

    def models_dir(self) -> Path | None:
        """None: the library is ``--library`` (given to the use case in its Options) or the default."""
        return None

    def prepare_training(self, use_gpu: bool) -> None:
        if self.before_training is not None:
            say, self.before_training = self.before_training, None
            say()
