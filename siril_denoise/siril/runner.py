"""What every entry script does: connect, check, install, then a dialog or the flags.

Started from Siril's Scripts menu (``is_cli()`` False, no arguments) a script
opens its dialog. Started headless (``siril-cli``), or with arguments through
``pyscript Name.py --flag ...``, it runs with the flags and shows no dialog.

With ``--seq NAME`` the Sequence and Train scripts read the named sequence's
``.seq`` file and frames themselves (:mod:`siril_denoise.siril.seqfile`):
headless ``siril-cli`` cannot load a multi-file sequence.

Expected failures (no image, wrong sequence type, busy Siril, no fitting
model, too few frames, any :class:`DenoiseError`) end as one clear line in
Siril's log (and a message box when there is a GUI), never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import Cancelled, DenoiseError
from ..flags import add_inference_flags
from ..usecases import choices, frames_layout, library_for, single_image_methods
from .jobs import JobOptions, JobResult, run_job
from .settings import TRAIN_NETWORKS, Settings, load_settings, save_settings, settings_path

if TYPE_CHECKING:
    from .adapter import SirilHost
    from .seqfile import SeqFileHost

    Host = SirilHost | SeqFileHost

SCRIPT_NAMES = {
    "image": "SirilDenoise_Image.py",
    "sequence": "SirilDenoise_Sequence.py",
    "train": "SirilDenoise_Train.py",
}
DESCRIPTIONS = {
    "image": "Denoise the image loaded in Siril with a saved model or a zero-shot method "
             "trained on the image itself. Undoable.",
    "sequence": "Denoise every selected frame of the loaded sequence into a new prefixed "
                "sequence. The original frames are not changed.",
    "train": "Train a Noise2Noise denoiser on the selected frames of the loaded sequence and "
             "save it in the model library, for the Denoise image and Denoise sequence scripts.",
}


def build_parser(job: str) -> argparse.ArgumentParser:
    """The flags of one script (the same choices as its dialog)."""
    d = JobOptions()
    parser = argparse.ArgumentParser(
        prog=SCRIPT_NAMES[job], description=DESCRIPTIONS[job],
        epilog=f"siril-denoise {__version__}. In Siril: pyscript {SCRIPT_NAMES[job]} [flags]")
    if job in ("image", "sequence"):
        pick = parser.add_mutually_exclusive_group()
        pick.add_argument("--model", metavar="NAME|PATH",
                          help="a model from the library (by name) or an .onnx file")
        singles = list(single_image_methods())
        pick.add_argument("--method", choices=["auto", *singles],
                          help=f"auto (default: best matching saved model, else {d.zero_shot}), or a "
                               f"single-image method trained on each image: {', '.join(singles)}")
        add_inference_flags(parser)
        parser.add_argument("--steps", type=int, default=0, metavar="N",
                            help="training steps of single-image methods, per image (default 0: the method's)")
        parser.add_argument("--time-limit", "--time-budget", dest="time_budget", type=float, default=0.0,
                            metavar="SEC", help="optional cap on single-image training seconds (default 0: none)")
        parser.add_argument("--list-models", action="store_true",
                            help="list the library's models ranked for this data, then stop")
    if job == "sequence":
        parser.add_argument("--prefix", default=d.prefix,
                            help=f"prefix of the new sequence (default {d.prefix})")
        parser.add_argument("--no-load", action="store_true",
                            help="do not load the new sequence when done")
    if job in ("sequence", "train"):
        parser.add_argument("--seq", metavar="NAME",
                            help="use this sequence instead of the loaded one: its name in "
                                 "Siril's working directory (with or without .seq) or the path "
                                 "of its .seq file; the frames are read from their FITS files "
                                 "(needed under siril-cli, which cannot load a sequence)")
    if job == "train":
        parser.add_argument("--name", help="name of the model in the library "
                                           "(default: from camera, gain, exposure and date)")
        parser.add_argument("--net", choices=TRAIN_NETWORKS, default=Settings.train_net,
                            help=f"network to train (default {Settings.train_net})")
        parser.add_argument("--steps", type=int, default=0, metavar="N",
                            help="training steps (default 0: the method's; the same steps give the same "
                                 "model however busy the machine is)")
        parser.add_argument("--time-limit", "--time-budget", dest="time_budget", type=float, default=0.0,
                            metavar="SEC", help="optional cap on training seconds (default 0: none); a model "
                                                "it stops early is flagged as cut short")
    parser.add_argument("--nogpu", action="store_true", help="use the CPU only")
    parser.add_argument("--library", type=Path, metavar="DIR",
                        help="model library folder (default: siril-denoise/models in Siril's "
                             "user data folder)")
    return parser


def options_from_args(job: str, args: argparse.Namespace) -> JobOptions:
    """Flags -> :class:`JobOptions` (checked: a bad value is a clear error, not a crash later)."""
    opts = JobOptions(use_gpu=not args.nogpu, library=args.library)
    if job in ("image", "sequence"):
        opts.choice = f"model:{args.model}" if args.model else (args.method or "auto")
        opts.strength, opts.tile, opts.overlap = args.strength, args.tile, args.overlap
    if job == "sequence":
        if not args.prefix or any(c in args.prefix for c in "/\\"):
            raise DenoiseError("--prefix must be a plain file-name prefix such as dn_.")
        opts.prefix, opts.load_result = args.prefix, not args.no_load
    if job == "train":
        opts.name, opts.net = args.name, args.net
    opts.time_limit = args.time_budget if args.time_budget > 0 else None
    opts.steps = args.steps if args.steps > 0 else None
    return opts.check()


class _CancelFlag:
    """Set by SIGINT/SIGTERM when headless (there is no Cancel button there)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, lambda *_: self.event.set())
            except (ValueError, OSError):  # not the main thread, or not supported here
                pass

    def __call__(self) -> bool:
        return self.event.is_set()


def main(job: str, argv: list[str] | None = None) -> int:
    """Run one entry script; returns the exit status (0 success, 1 failure or cancel)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(job)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2): argparse already printed why
        if exc.code:
            print("ERROR: siril-denoise: the flags above were not understood; nothing was changed.",
                  flush=True)
        return int(exc.code or 0)

    from .adapter import NotInSiril, SirilHost

    try:
        host = SirilHost.connect()
    except NotInSiril as exc:
        print(f"ERROR: siril-denoise: {exc}", flush=True)
        return 1
    gui = not host.is_cli() and not argv
    try:
        host.log(f"siril-denoise {__version__}: {DESCRIPTIONS[job].split('.')[0]}.")
        host.require_siril("1.4.0")
        if gui:
            return _run_gui(job, host)
        return _run_headless(job, host, args)
    except Cancelled as exc:
        host.log(str(exc), "warning")
        return 1
    except DenoiseError as exc:
        host.log(_unchanged(job, str(exc)), "error")
        if gui:
            host.message_box(str(exc), "error")
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: say so, with the details for a report
        host.log(_unchanged(job, "siril-denoise stopped on an unexpected error (please report it): "
                                 f"{exc!r}."), "error")
        for line in traceback.format_exc().splitlines():
            host.log(line, "error")
        return 1
    finally:
        host.reset_progress()
        host.disconnect()


def _unchanged(job: str, message: str) -> str:
    """A failed Image script writes nothing back (the image is only written at the very end): say so.

    Siril ends the failed script with "Script execution finished successfully"
    all the same, so the log line must tell the user.
    """
    first, _, rest = message.partition("\n")
    if job == "image" and "not changed" not in first:
        first = first.rstrip() + " The image was not changed."
    return first + ("\n" + rest if rest else "")


def _settings(host: Host) -> tuple[Settings, Path]:
    path = settings_path(host.config_dir())
    settings, problem = load_settings(path)
    if problem:
        host.log(problem, "warning")
    return settings, path


def _precheck(job: str, host: Host) -> tuple[int, Any] | None:
    """Fail fast, before any install: the data the job needs must be loaded."""
    if job == "image":
        return host.image_meta()
    info = host.sequence_info(need_regular=(job == "sequence"))
    if job == "sequence" and info.selected:
        return frames_layout(host, info)
    return None


def _prepared(job: str, host: Host, opts: JobOptions) -> JobOptions:
    from .adapter import execution_providers

    opts.providers = execution_providers(host, opts.use_gpu)
    return opts


def _log_result(host: Host, result: JobResult) -> None:
    host.log(result.text, "ok")
    for warning in result.warnings:
        host.log(f"Warning: {warning}", "warning")


def _run_headless(job: str, host: Host, args: argparse.Namespace) -> int:
    from .adapter import bootstrap

    opts = options_from_args(job, args)
    if getattr(args, "seq", None):
        from .seqfile import SeqFileHost

        host = SeqFileHost(host, args.seq)
    found = _precheck(job, host)
    bootstrap(host, need_gui=False)
    if job != "train" and args.list_models:
        ndim, meta = found if found else (2, None)
        for choice in choices(library_for(host, opts), ndim, meta, opts):
            host.log(("  " if choice.usable else "x ") + choice.label
                     + (f": {choice.tooltip}" if choice.tooltip and not choice.usable else ""))
        return 0
    cancel = _CancelFlag()
    cancel.install()
    start = time.monotonic()
    result = run_job(job, host, _prepared(job, host, opts), host.progress, cancel)
    _log_result(host, result)
    took = time.monotonic() - start
    installing = host.install_seconds
    host.log(f"siril-denoise took {took - installing:.1f} s"
             + (f" (and {installing:.0f} s installing PyTorch and the training packages)."
                if installing else "."))
    return 0


def _run_gui(job: str, host: Host) -> int:
    from .adapter import bootstrap

    settings, path = _settings(host)
    found = _precheck(job, host)
    bootstrap(host, need_gui=True)
    from .gui import run_dialog

    offered = None
    if job != "train":
        ndim, meta = found if found else (2, None)
        offered = choices(library_for(host, JobOptions()), ndim, meta)

    def work(opts: JobOptions, progress: Any, should_cancel: Any) -> JobResult:
        def both(fraction: float, message: str) -> None:
            host.progress(fraction, message)
            progress(fraction, message)

        try:
            result = run_job(job, host, _prepared(job, host, opts), both, should_cancel)
        except DenoiseError as exc:
            host.log(str(exc), "warning" if isinstance(exc, Cancelled) else "error")
            raise
        finally:
            host.reset_progress()
        _log_result(host, result)
        return result

    final = run_dialog(job, settings, offered, work, title=SCRIPT_NAMES[job][:-3].replace("_", " "),
                       description=DESCRIPTIONS[job])
    if final is not None:
        save_settings(final, path)
    return 0
