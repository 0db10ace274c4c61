"""The ``siril-denoise`` command: train, apply and manage denoisers outside Siril.

Subcommands::

    siril-denoise denoise IMAGE -o OUT            zero-shot: learn from this very image
    siril-denoise train --input "lights/*.fits"   learn a model from a session's frames
    siril-denoise apply --model NAME IN... -o DIR denoise many frames with a saved model
    siril-denoise auto --train-on ... --apply-to ... --output DIR
    siril-denoise models list | show NAME | delete NAME
    siril-denoise demo                            no data needed: a synthetic sub
    siril-denoise install-siril                   put the scripts in Siril's menu
    siril-denoise bench ...                       the benchmark

``apply`` accepts both spellings of the seed documents: ``apply IN... -o DIR``
and ``apply --input "GLOB" --output DIR``. ``--library DIR`` picks the model
library wherever one is read or written (default: ``$SIRIL_DENOISE_LIBRARY``
or the user data folder).

Exit codes:

* 0 -- success;
* 1 -- an expected error (bad input, a model that does not fit, an existing
  output file...): ``error: <message>`` on stderr, no traceback;
* 2 -- a usage error (unknown option, missing argument), from argparse;
* 130 -- cancelled (Ctrl-C); files already written are complete, nothing
  half-written is left behind.

Anything else that goes wrong is a bug and keeps its traceback.

Heavy modules (torch, the engine) are imported inside the subcommands, so
``siril-denoise --help`` and ``siril-denoise models list`` start fast and work
without torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .console import Bar, Console, CtrlC, setup_logging, short_report, work_text
from .errors import Cancelled, DenoiseError, InputError, ModelError
from .io import make_output_dir, output_for_image, plan_outputs

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130

_CFA_CHOICES = "auto, none, RGGB, BGGR, GRBG or GBRG"

log = logging.getLogger("siril_denoise.cli")


# --------------------------------------------------------------------------
# Small helpers shared by the subcommands
# --------------------------------------------------------------------------

def _number(kind: type, lo: float, hi: float | None = None, *, open_lo: bool = False, what: str = ""):
    """An argparse type: a ``kind`` (int or float) within [lo, hi] (or above lo when ``open_lo``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if (value <= lo if open_lo else value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(what or f"must be greater than {lo:g}, got {text}")
        return value

    return parse


_strength = _number(float, 0.0, 1.0, what="must be between 0 (original) and 1 (fully denoised)")
_positive_float = _number(float, 0.0, open_lo=True)
_positive_int = _number(int, 0, open_lo=True)


def _resolve_cfa(choice: str, loaded: Any) -> str | None:
    """The Bayer pattern to pack the image with, from ``--cfa`` and the image.

    ``auto``: the header's pattern (``loaded.meta.bayer_pattern``) when the
    image is a 2-D mono mosaic with a 2x2 Bayer pattern, else None.
    ``none``: never. A pattern: that pattern (checked).
    """
    from .layout import BAYER_PATTERNS, normalise_pattern

    choice = (choice or "auto").strip()
    if choice.lower() == "auto":
        pattern = (loaded.meta.bayer_pattern or "").upper()
        if loaded.data.ndim == 2 and pattern in BAYER_PATTERNS:
            return pattern
        if loaded.data.ndim == 2 and pattern and pattern != "NONE":
            log.warning("%s: Bayer pattern %s is not a 2x2 pattern; processing it as mono.",
                        loaded.path.name, pattern)
        return None
    if choice.lower() == "none":
        return None
    return normalise_pattern(choice)


def _channels_for(loaded: Any, cfa: str | None) -> int:
    """How many planes the network sees for this image (4 for a packed CFA mosaic)."""
    if cfa:
        return 4
    return 1 if loaded.data.ndim == 2 else int(loaded.data.shape[0])


def _library(args: argparse.Namespace):
    from .library import ModelLibrary

    return ModelLibrary(getattr(args, "library", None))


def _history(what: str, strength: float) -> str:
    return f"siril-denoise {__version__}: {what}, strength {strength:g}"


def _gather_inputs(*groups: Sequence[str] | None) -> list[Path]:
    from .io import expand_inputs

    patterns = [p for g in groups if g for p in g]
    if not patterns:
        raise InputError("No input files given: name them (IN...) or use --input \"lights/*.fits\".")
    return expand_inputs(patterns)


# --------------------------------------------------------------------------
# denoise
# --------------------------------------------------------------------------

def _work_text(args: argparse.Namespace) -> str:
    """``800 steps, seed 0`` / ``600 steps, seed 0, at most 60 s``."""
    from .pipeline import default_steps

    return work_text(args.steps or default_steps(args.method), args.seed, args.time_budget)


def cmd_denoise(args: argparse.Namespace, con: Console) -> int:
    """Train a zero-shot denoiser on one image and write the denoised image."""
    from .io import check_output_name, read_image, write_image
    from .pipeline import denoise_image

    inp = Path(args.input).expanduser()
    loaded = read_image(inp)
    out = output_for_image(inp, args.output)
    check_output_name(out)
    if out.exists() and out.resolve() == inp.resolve():
        raise InputError(f"{out} is the input file; choose another output name so the original stays untouched.")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; remove it, choose another name, or pass --overwrite.")
    if args.output.endswith(("/", os.sep)):
        out.parent.mkdir(parents=True, exist_ok=True)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: the output folder does not exist.")
    if args.save_model and Path(args.save_model).exists() and not args.overwrite:
        raise InputError(f"{args.save_model} already exists; choose another name or pass --overwrite.")
    cfa = _resolve_cfa(args.cfa, loaded)
    if cfa:
        con.info(f"Raw Bayer {cfa} mosaic: denoising the 4 colour planes packed (use --cfa none to disable).")

    with tempfile.TemporaryDirectory(prefix="siril-denoise-") as tmp:
        model_path = Path(args.save_model).expanduser() if args.save_model else None
        if model_path is None and args.save_to_library is not None:
            model_path = Path(tmp) / "model.onnx"
        con.info(f"Training {args.method} on {inp.name} ({_work_text(args)}, "
                 f"{'CPU' if args.cpu else 'GPU if available'})...")
        with CtrlC() as cancel, Bar("denoise", not con.quiet) as bar:
            result = denoise_image(
                loaded.data, method=args.method, cfa_pattern=cfa, strength=args.strength,
                time_budget=args.time_budget, use_gpu=not args.cpu, tile=args.tile, overlap=args.overlap,
                protect=not args.no_protect, meta=loaded.meta, save_model=model_path,
                progress=bar, should_cancel=cancel, max_steps=args.steps, seed=args.seed, threads=args.threads,
            )
        con.training_notes(result.model_metadata)
        write_image(out, result.data, like=loaded, history=_history(args.method, args.strength),
                    overwrite=args.overwrite)
        con.info(result.report.as_text())
        if args.save_model:
            con.summary(f"Model saved to {model_path}")
        if args.save_to_library is not None:
            name = args.save_to_library if isinstance(args.save_to_library, str) else None
            entry = _library(args).add(model_path, name=name, meta=loaded.meta)
            con.summary(f"Model added to the library {entry.path.parent} as {entry.name}")
    con.summary(f"Wrote {out}: {short_report(result.report)}")
    return EXIT_OK


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------

def _read_frames(paths: Sequence[Path], con: Console, cancel: Callable[[], bool]) -> list[Any]:
    """Read every frame (with a progress bar); InputError naming the file whose size differs."""
    from tqdm import tqdm

    from .io import read_image

    frames = []
    for path in tqdm(paths, desc="reading", unit="frame", disable=con.quiet, leave=False, file=sys.stderr):
        if cancel():
            raise Cancelled("Cancelled while reading the frames; nothing was trained or saved.")
        loaded = read_image(path)
        if frames and loaded.data.shape != frames[0].data.shape:
            first = frames[0]
            raise InputError(
                f"{path.name} is {'x'.join(map(str, loaded.data.shape))} but {first.path.name} is "
                f"{'x'.join(map(str, first.data.shape))}: all frames of a session must have the same size "
                "and layout. Train on one session (or one camera setting) at a time.")
        frames.append(loaded)
    return frames


def _train(args: argparse.Namespace, con: Console, patterns: Sequence[str]) -> tuple[Any, Any]:
    """Read the frames, train, add to the library; returns (TrainedModel, LibraryEntry | None)."""
    from .library import sanitise_name
    from .pipeline import DEFAULT_NET, train_on_frames

    paths = _gather_inputs(patterns)
    if args.method == "n2n" and len(paths) < 2:
        raise InputError(
            f"Noise2Noise (--method n2n) needs at least 2 frames of the same target; got 1 ({paths[0]}). "
            "For a single image use a zero-shot method: --method zsn2n (or nb2nb), or "
            "`siril-denoise denoise IMAGE -o OUT`.")
    lib = None if args.no_library else _library(args)
    if lib is not None and args.name:
        stem = sanitise_name(args.name)
        if not stem:
            raise ModelError(f"{args.name!r} cannot be used as a model name; use letters, digits, '-' or '_'.")
        if (lib.root / f"{stem}.onnx").exists():
            raise ModelError(f"A model called {stem!r} is already in the library {lib.root}; choose another "
                             "--name or delete it first (siril-denoise models delete).")
    save_model = Path(args.save_model).expanduser() if args.save_model else None
    if save_model is not None and save_model.exists() and not args.overwrite:
        raise InputError(f"{save_model} already exists; choose another name or pass --overwrite.")

    with CtrlC() as cancel:
        frames = _read_frames(paths, con, cancel)
        first = frames[0]
        cfa = _resolve_cfa(args.cfa, first)
        con.info(f"Training {args.method} ({args.net or DEFAULT_NET[args.method]}) on {len(frames)} frame(s) of "
                 f"{'x'.join(map(str, first.data.shape))}{', Bayer ' + cfa if cfa else ''} ({_work_text(args)}); "
                 "Ctrl-C cancels.")
        with Bar("training", not con.quiet) as bar:
            trained = train_on_frames(
                [f.data for f in frames], cfa_pattern=cfa, method=args.method, net=args.net,
                time_budget=args.time_budget, use_gpu=not args.cpu, meta=first.meta,
                progress=bar, should_cancel=cancel, out_dir=args.out,
                max_steps=args.steps, seed=args.seed, threads=args.threads,
            )
    del frames
    con.summary(trained.summary)
    con.training_notes(trained.metadata)
    entry = None
    if lib is not None:
        entry = lib.add(trained.onnx_path, name=args.name, meta=first.meta)
        con.summary(f"Saved in the library {lib.root} as {entry.name}")
    if save_model is not None:
        shutil.copyfile(trained.onnx_path, save_model)
        con.summary(f"Model file: {save_model}")
    elif entry is None:
        con.summary(f"Model file: {trained.onnx_path}")
    curve = [str(p) for p in (trained.history_csv, trained.plot_png) if p is not None]
    if curve:
        con.info(f"Validation curve: {', '.join(curve)}")
    return trained, entry


def cmd_train(args: argparse.Namespace, con: Console) -> int:
    """Learn a model from a session's frames and save it in the library."""
    _train(args, con, (args.inputs or []) + (args.input or []))
    return EXIT_OK


# --------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------

def _pick_model(lib: Any, first: Any, cfa: str | None, con: Console) -> Path:
    """The best usable library model for this frame; ModelError listing the reasons when none fits."""
    from .library import format_matches

    matches = lib.match(first.meta, channels=_channels_for(first, cfa), cfa=cfa)
    usable = [m for m in matches if m.usable]
    if not usable:
        if not matches:
            raise ModelError(f"No --model given and the library {lib.root} is empty. Train one first "
                             "(siril-denoise train), or give --model FILE.onnx.")
        raise ModelError(f"No model in the library {lib.root} fits {first.path.name}:\n"
                         f"{format_matches(matches)}\nTrain one on this session (siril-denoise train) "
                         "or give --model.")
    best = usable[0]
    why = "; ".join(best.reasons) if best.reasons else "same camera settings"
    con.info(f"Using library model {best.entry.name} (score {best.score:.2f}: {why})")
    return best.entry.path


def _apply_frames(args: argparse.Namespace, con: Console, inputs: Sequence[Path], model: str | None) -> int:
    """Stream frames through a model: read -> apply -> write -> free, one at a time."""
    from tqdm import tqdm

    from .io import read_image, write_image
    from .pipeline import apply_model

    out_dir = Path(args.output).expanduser()
    plan = plan_outputs(inputs, out_dir, args.prefix, args.overwrite)
    lib = _library(args)
    first = read_image(plan[0][0])
    if model is not None:
        model_path = lib.resolve(model)
    else:
        model_path = _pick_model(lib, first, _resolve_cfa(args.cfa, first), con)
    make_output_dir(out_dir)
    label = model_path.stem
    done = 0
    reductions = []
    warned = 0
    con.info(f"Denoising {len(plan)} frame(s) with {model_path} into {out_dir}")
    with CtrlC() as cancel, tqdm(total=len(plan), desc="frames", unit="frame", disable=con.quiet,
                                  file=sys.stderr) as bar:
        try:
            for src, dst in plan:
                if cancel():
                    raise Cancelled("Cancelled.")
                loaded = first if first is not None else read_image(src)
                first = None
                try:
                    result = apply_model(
                        loaded.data, model_path, cfa_pattern=_resolve_cfa(args.cfa, loaded),
                        strength=args.strength, use_gpu=not args.cpu, tile=args.tile, overlap=args.overlap,
                        protect=not args.no_protect, meta=loaded.meta, should_cancel=cancel,
                    )
                except (InputError, ModelError) as exc:
                    raise type(exc)(f"{src.name}: {exc}") from None
                write_image(dst, result.data, like=loaded, history=_history(f"model {label}", args.strength),
                            overwrite=args.overwrite)
                rep = result.report
                reductions.append(rep.noise_reduction_overall)
                con.info(f"{src.name} → {dst.name}: {short_report(rep)}")
                for w in rep.warnings:
                    warned += 1
                    con.info(f"  warning: {w}")
                del loaded, result
                done += 1
                bar.update(1)
        except DenoiseError as exc:
            where = f" into {out_dir}" if done else ""
            tail = (f"{done} of {len(plan)} frame(s) were written{where} and are complete; "
                    "no half-written file was left.")
            if isinstance(exc, Cancelled):
                raise Cancelled(f"Cancelled: {tail}") from None
            raise type(exc)(f"{exc}\n{tail}") from None
    import statistics

    med = statistics.median(reductions) if reductions else float("nan")
    con.summary(f"Denoised {done} frame(s) into {out_dir} with {label}: median noise {med:.1f}× lower"
                + (f"; {warned} warning(s) {'(run without -q to see them)' if con.quiet else 'above'}"
                   if warned else ""))
    return EXIT_OK


def cmd_apply(args: argparse.Namespace, con: Console) -> int:
    """Denoise many frames with a saved model (or the library's best match)."""
    inputs = _gather_inputs(args.inputs, args.input)
    return _apply_frames(args, con, inputs, args.model)


def cmd_auto(args: argparse.Namespace, con: Console) -> int:
    """Train on some frames, then apply the model to others (or the same)."""
    apply_inputs = _gather_inputs(args.apply_to)
    # Check the outputs before spending minutes on training.
    plan_outputs(apply_inputs, Path(args.output).expanduser(), args.prefix, args.overwrite)
    trained, entry = _train(args, con, args.train_on)
    model = str(entry.path if entry is not None else trained.onnx_path)
    return _apply_frames(args, con, apply_inputs, model)


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace, con: Console) -> int:
    """List, show or delete library models."""
    from .library import format_list, format_show

    lib = _library(args)
    if args.models_command == "list":
        con.summary(format_list(lib))
    elif args.models_command == "show":
        con.summary(format_show(lib.get(args.name)))
    elif args.models_command == "delete":
        entry = lib.get(args.name)
        if not args.yes and sys.stdin is not None and sys.stdin.isatty():
            answer = input(f"Delete model {entry.name} ({entry.path})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                con.summary("Nothing deleted.")
                return EXIT_OK
        lib.delete(entry.name)
        con.summary(f"Deleted model {entry.name} from {lib.root}")
    else:  # pragma: no cover - argparse requires a subcommand
        raise InputError("Choose list, show or delete.")
    return EXIT_OK


# --------------------------------------------------------------------------
# demo, install-siril and bench
# --------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, con: Console) -> int:
    """Denoise a synthetic faint sub with known truth and score it."""
    from .demo import run_demo

    run_demo(con, size=args.size, method=args.method, steps=args.steps, time_budget=args.time_budget,
             seed=args.seed, threads=args.threads, tile=args.tile, use_gpu=not args.cpu,
             out_dir=Path(args.out).expanduser() if args.out else None)
    return EXIT_OK


def cmd_install_siril(args: argparse.Namespace, con: Console) -> int:
    """Install (or remove) the Siril entry scripts and the engine beside them."""
    from .siril.install import install

    scripts_dir = Path(args.scripts_dir).expanduser() if args.scripts_dir else None
    for message in install(scripts_dir, uninstall=args.uninstall):
        con.summary(message)
    return EXIT_OK


def run_bench(argv: Sequence[str]) -> int:
    """Hand the arguments to ``siril_denoise.bench.main``; exit 1 with a message if it is missing."""
    try:
        from . import bench
        bench_main = bench.main
    except (ImportError, AttributeError) as exc:
        print(f"error: the benchmark is not available in this installation ({exc}). Install from a source "
              "checkout with the bench extra: pip install -e '.[bench]'.", file=sys.stderr)
        return EXIT_ERROR
    return int(bench_main(list(argv)) or 0)


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------

class _Help(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks."""


def _add_global(parser: argparse.ArgumentParser, sub: bool) -> None:
    """--quiet and -v, accepted before or after the subcommand."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if sub else False,
                        help="no progress bars, only errors and the final summary")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if sub else 0,
                        help="log engine details on stderr (-v INFO, -vv DEBUG)")


def _add_cpu(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", action="store_true", help="use no GPU, for training or inference")


def _add_library(p: argparse.ArgumentParser, default: Any = None) -> None:
    p.add_argument("--library", metavar="DIR", default=default,
                   help="model library folder (default: $SIRIL_DENOISE_LIBRARY or the user data folder)")


def _add_image_options(p: argparse.ArgumentParser) -> None:
    """--cfa, --cpu and --library: how frames are read, where the work runs, where models live."""
    p.add_argument("--cfa", default="auto", metavar="PATTERN",
                   help=f"raw Bayer mosaic handling: {_CFA_CHOICES} (default auto); auto uses the header's BAYERPAT "
                        "for 2-D (undebayered) images")
    _add_cpu(p)
    _add_library(p)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """Frames as positional IN... or --input GLOB (both spellings of the design)."""
    p.add_argument("inputs", nargs="*", metavar="IN", help="frames: files, folders or quoted globs")
    p.add_argument("--input", "-i", action="extend", nargs="+", metavar="GLOB", default=[],
                   help="frames (same as IN; may be repeated)")


def _add_output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--prefix", default="dn_", help="output file name prefix (default dn_)")


def _add_inference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strength", type=_strength, default=1.0, metavar="S",
                   help="0 = original, 1 = fully denoised (linear blend; default 1)")
    p.add_argument("--tile", type=_positive_int, default=256, metavar="N", help="inference tile side in pixels (default 256)")
    p.add_argument("--overlap", type=int, default=None, metavar="N",
                   help="pixels shared by neighbouring tiles (default: tile/4, at least 32)")
    p.add_argument("--no-protect", action="store_true",
                   help="do not give back significant non-noise structure (star cores) the network removed")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the inputs)")


def _add_steps(p: argparse.ArgumentParser) -> None:
    """--steps, --time-limit, --seed, --threads: work counted in steps, time only as an optional cap."""
    p.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                   help="training steps (default: the method's: n2n 800, nb2nb 1000, zsn2n 600); the same "
                        "steps give the same model however busy the machine is")
    p.add_argument("--time-limit", "--time-budget", dest="time_budget", type=_positive_float, default=None,
                   metavar="SEC", help="optional cap on training seconds (default: none); a model it stops "
                                       "early is flagged as cut short")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the initial weights and the training crops (default 0): same input, same output")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads for training (default: half the CPUs, fixed whatever the load)")


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("n2n", "nb2nb", "zsn2n"), default="n2n",
                   help="n2n: Noise2Noise across frames (needs >= 2 frames); nb2nb: Neighbor2Neighbor; "
                        "zsn2n: Zero-Shot Noise2Noise (default n2n)")
    p.add_argument("--net", choices=("unet", "dncnn", "zsn2n"), default=None,
                   help="network (default: the method's: unet for n2n/nb2nb, zsn2n for zsn2n)")
    _add_steps(p)
    p.add_argument("--name", default=None, help="name in the library (default: camera_gain_exposure_method_date)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for model.onnx and the validation curve (default: a new temporary folder)")
    p.add_argument("--save-model", "--output-model", dest="save_model", metavar="FILE.onnx", default=None,
                   help="also copy the trained model to this file")
    p.add_argument("--no-library", action="store_true", help="do not add the model to the library")


def build_parser() -> argparse.ArgumentParser:
    """The complete argument parser (every subcommand with its options and examples)."""
    parser = argparse.ArgumentParser(
        prog="siril-denoise", formatter_class=_Help,
        description="Learn a denoiser from your own astro frames (no clean data, no downloaded weights), "
                    "export it to ONNX and apply it to FITS/XISF files.",
        epilog="examples:\n"
               "  siril-denoise demo\n"
               "  siril-denoise denoise light_001.fits -o out/\n"
               "  siril-denoise train --input \"lights/*.fits\" --name asi2600_g100\n"
               "  siril-denoise apply --model asi2600_g100 lights/*.fits -o denoised/\n"
               "  siril-denoise models list\n\n"
               "exit codes: 0 ok, 1 expected error (bad input, bad model), 2 usage error, 130 cancelled")
    parser.add_argument("--version", action="version", version=f"siril-denoise {__version__}")
    _add_global(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, epilog: str, func: Callable, *groups: Callable) -> argparse.ArgumentParser:
        """A subcommand running ``func``, with -q/-v and the option ``groups``, in this order."""
        p = sub.add_parser(name, help=help_text, description=help_text, epilog="examples:\n" + epilog,
                           formatter_class=_Help)
        _add_global(p, sub=True)
        for group in groups:
            group(p)
        p.set_defaults(func=func)
        return p

    p = add("denoise", "denoise one image with a zero-shot method trained on the image itself",
            "  siril-denoise denoise light_001.fits -o light_001_dn.fits\n"
            "  siril-denoise denoise m94.xisf -o out/ --method nb2nb --steps 2000\n"
            "  siril-denoise denoise raw.fit -o out/ --save-to-library seestar_zs --strength 0.8\n",
            cmd_denoise)
    p.add_argument("input", metavar="IN", help="FITS or XISF image")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file, or a folder (then <stem>_dn<ext> inside it)")
    p.add_argument("--method", choices=("zsn2n", "nb2nb"), default="zsn2n",
                   help="zsn2n: Zero-Shot Noise2Noise (fast, default); nb2nb: Neighbor2Neighbor (U-Net, slower)")
    _add_steps(p)
    p.add_argument("--save-model", metavar="M.onnx", default=None, help="also keep the trained model here")
    p.add_argument("--save-to-library", nargs="?", const=True, default=None, metavar="NAME",
                   help="add the trained model to the library (optionally under NAME; put IN before this option)")
    _add_inference(p)
    _add_image_options(p)

    p = add("train", "learn a denoiser from the frames of one session and save it in the library",
            "  siril-denoise train --input \"lights/*.fits\"\n"
            "  siril-denoise train lights/L_*.fit --method n2n --net unet --steps 2000 --name asi2600_g100\n"
            "  siril-denoise train --input \"raw/*.fit\" --cfa auto --library ~/models --out run1/\n",
            cmd_train, _add_inputs, _add_training, _add_image_options)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save-model file")

    p = add("apply", "denoise frames with a saved model (one frame at a time)",
            "  siril-denoise apply --model asi2600_g100 lights/*.fits -o denoised/\n"
            "  siril-denoise apply --model my.onnx --input \"lights/*.xisf\" --output denoised/ --prefix dn_\n"
            "  siril-denoise apply --input \"lights/*.fits\" --output denoised/   # best library match\n",
            cmd_apply, _add_inputs, _add_output_dir)
    p.add_argument("--model", "-m", default=None, metavar="NAME_OR_PATH",
                   help="library model name or .onnx file (default: the best usable library match)")
    _add_inference(p)
    _add_image_options(p)

    p = add("auto", "train on some frames, then apply the model to others",
            "  siril-denoise auto --train-on \"lights/*.fits\" --apply-to \"lights/*.fits\" --output denoised/\n"
            "  siril-denoise auto --train-on \"lights/[0-9].xisf\" --apply-to \"lights/*.xisf\" "
            "--output dn/ --method nb2nb\n",
            cmd_auto, _add_output_dir, _add_training, _add_inference, _add_image_options)
    p.add_argument("--train-on", action="extend", nargs="+", required=True, metavar="GLOB",
                   help="frames to train on")
    p.add_argument("--apply-to", action="extend", nargs="+", required=True, metavar="GLOB",
                   help="frames to denoise")

    p = add("models", "list, show or delete the models of the library",
            "  siril-denoise models list\n"
            "  siril-denoise models show asi2600_g100\n"
            "  siril-denoise models delete asi2600_g100 --yes --library ~/models\n",
            cmd_models, _add_library)
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    # --library after the action too; SUPPRESS keeps a value given before it.
    m = msub.add_parser("list", help="one line per model", formatter_class=_Help)
    _add_library(m, argparse.SUPPRESS)
    m = msub.add_parser("show", help="everything known about one model", formatter_class=_Help)
    m.add_argument("name", metavar="NAME")
    _add_library(m, argparse.SUPPRESS)
    m = msub.add_parser("delete", help="remove a model (asks first on a terminal)", formatter_class=_Help)
    m.add_argument("name", metavar="NAME")
    m.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _add_library(m, argparse.SUPPRESS)

    p = add("demo", "denoise a synthetic faint sub (no data needed) and score it against the truth",
            "  siril-denoise demo\n"
            "  siril-denoise demo --size 512 --steps 600 --out demo/\n",
            cmd_demo)
    p.add_argument("--size", type=_positive_int, default=256, metavar="N", help="image side in pixels (default 256)")
    p.add_argument("--method", choices=("zsn2n", "nb2nb"), default="zsn2n", help="zero-shot method (default zsn2n)")
    _add_steps(p)
    p.add_argument("--tile", type=_positive_int, default=256, metavar="N",
                   help="inference tile side, also used to measure throughput (default 256)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write demo_noisy/denoised/truth.fits and demo_model.onnx here (replaced if present)")
    _add_cpu(p)

    p = add("install-siril", "install the scripts in Siril's Scripts menu (or remove them)",
            "  siril-denoise install-siril\n"
            "  siril-denoise install-siril --scripts-dir ~/.siril/scripts\n"
            "  siril-denoise install-siril --uninstall\n",
            cmd_install_siril)
    p.add_argument("--scripts-dir", metavar="DIR", default=None,
                   help="Siril script folder (default: ~/.siril/scripts, %%APPDATA%%\\siril\\scripts on Windows)")
    p.add_argument("--uninstall", action="store_true", help="remove what a previous install put there")

    # Placeholder so `bench` shows in --help; main() hands its arguments over untouched.
    sub.add_parser("bench", help="run the benchmark (arguments go to the benchmark; see bench --help)",
                   add_help=False)
    return parser


def _split_bench(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """(global options, bench arguments) when the command is ``bench``, else None."""
    for k, token in enumerate(argv):
        if token == "bench":
            return argv[:k], argv[k + 1:]
        if token in ("-q", "--quiet") or token == "-v" or token.startswith("-vv") or token == "--verbose":
            continue
        return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bench = _split_bench(argv)
    if bench is not None:
        glob_args, rest = bench
        quiet = any(a in ("-q", "--quiet") for a in glob_args)
        verbose = sum(a.count("v") for a in glob_args if a.startswith("-v")) + glob_args.count("--verbose")
        setup_logging(quiet, verbose)
        return run_bench(rest)

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "library", argparse.SUPPRESS) is argparse.SUPPRESS:
        args.library = None
    setup_logging(args.quiet, args.verbose)
    con = Console(args.quiet)
    try:
        return int(args.func(args, con))
    except Cancelled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except DenoiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nerror: interrupted; files already written are complete, nothing half-written was left.",
              file=sys.stderr)
        return EXIT_CANCELLED
