"""The ``siril-denoise`` command: argparse and what it prints, over the use cases.

Each subcommand turns its arguments into :class:`~siril_denoise.usecases.Options`
(an argument's ``dest`` is the field's name, its default the field's
default), builds a file host (:mod:`siril_denoise.files`: FITS/XISF in and
out, words on the terminal) and runs a use case of :mod:`siril_denoise.usecases`.
Method names, labels and step counts come from :data:`siril_denoise.methods.METHODS`.

Exit codes: 0 success; 1 an expected error (bad input, a model that does not
fit, an existing output file...), printed as ``error: <message>`` without a
traceback; 2 a usage error, from argparse; 130 cancelled (Ctrl-C), the files
already written complete and nothing half-written left. Anything else is a
bug and keeps its traceback.

torch and the engine are imported only when a subcommand trains or denoises:
``siril-denoise --help`` and ``models list`` start fast and work without torch.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__, usecases
from .bench_entry import bench_command, run_bench
from .console import Console, CtrlC, setup_logging, short_report, work_text
from .errors import Cancelled, DenoiseError
from .files import FileFrames, ImageFile, gather_inputs, refuse_existing
from .flags import add_inference_flags, number, tile
from .methods import METHODS, default_single_image_method, method_spec, single_image_methods
from .usecases import ZERO_SHOT, Options

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130

DEFAULTS = Options()

#: ``--method`` of denoise and demo: the single-image method measured best for the data (Options' ZERO_SHOT).
AUTO_METHOD = "auto"


# --------------------------------------------------------------------------
# The subcommands: arguments -> Options -> a file host -> a use case -> what is printed
# --------------------------------------------------------------------------

def _options(args: argparse.Namespace, **given: Any) -> Options:
    """The use cases' Options: each argument whose dest is an Options field, then ``given``."""
    values = {f.name: getattr(args, f.name) for f in fields(Options) if hasattr(args, f.name)}
    return Options(**{**values, **given}).check()


def _image_choice(method: str) -> str:
    """Options' ``choice`` for ``--method`` of denoise and demo: a method named, or :data:`ZERO_SHOT` for auto."""
    return ZERO_SHOT if method == AUTO_METHOD else method


def _announce(con: Console, opts: Options, method: str, what: str) -> Callable[[], None]:
    """The line said when training starts: method, network, data, steps, seed, device."""
    spec = method_spec(method)
    net = opts.net or spec.network
    work = work_text(opts.steps or spec.recipe.steps, opts.seed, opts.time_limit)
    return lambda: con.info(f"Training {method} ({net}) on {what} ({work}, on "
                            f"{usecases.training_device(opts.use_gpu)}); Ctrl-C cancels.")


def cmd_denoise(args: argparse.Namespace, con: Console) -> int:
    """Train a single-image denoiser on one image and write the denoised image."""
    name = args.save_to_library if isinstance(args.save_to_library, str) else None
    opts = _options(args, choice=_image_choice(args.method), add_to_library=args.save_to_library is not None,
                    name=name)
    host = ImageFile(con, args.input, args.output, overwrite=args.overwrite)
    refuse_existing(opts.save_model, args.overwrite)
    data, meta = host.read_image()
    method, _ = usecases.single_image_method(opts, meta, usecases.cfa_mode(data.ndim, meta, opts.cfa))
    host.before_training = _announce(con, opts, method, host.src.name)
    with host:
        outcome = usecases.denoise_image(host, opts)
    con.training_notes(outcome.result.model_metadata)
    con.info(outcome.result.report.as_text())
    if opts.save_model:
        con.summary(f"Model saved to {opts.save_model}")
    if outcome.model_name:
        con.summary(f"Model added to the library {usecases.library_for(host, opts).root} as {outcome.model_name}")
    con.summary(f"Wrote {host.out}: {short_report(outcome.result.report)}")
    return EXIT_OK


def _training(args: argparse.Namespace, con: Console, patterns: Sequence[str], cancel: CtrlC | None = None
              ) -> tuple[Options, FileFrames]:
    """The Options and the frames host of a training run (train, auto); checks the --save-model file."""
    opts = _options(args, add_to_library=False if args.no_library else None)
    refuse_existing(opts.save_model, args.overwrite)
    paths = gather_inputs(patterns)
    say = _announce(con, opts, opts.train_method, f"{len(paths)} frame(s)")
    return opts, FileFrames(con, "training", paths, same_size=True, cancel=cancel, before_training=say)


def cmd_train(args: argparse.Namespace, con: Console) -> int:
    """Learn a model from a session's frames and save it in the library."""
    opts, host = _training(args, con, (args.inputs or []) + (args.input or []))
    with host:
        outcome = usecases.train_model(host, opts)
    con.trained(outcome, opts.save_model)
    return EXIT_OK


def _frames_host(args: argparse.Namespace, con: Console, paths: list[Path], cancel: CtrlC | None = None
                 ) -> FileFrames:
    """The host of the frames to denoise (apply, auto): into --output, named --prefix + the input's name."""
    return FileFrames(con, "frames", paths, out_dir=args.output, prefix=args.prefix, overwrite=args.overwrite,
                      cancel=cancel)


def cmd_apply(args: argparse.Namespace, con: Console) -> int:
    """Denoise many frames with a saved model (or the library's best match)."""
    opts = _options(args, choice=f"model:{args.model}" if args.model else "auto", zero_shot=None)
    host = _frames_host(args, con, gather_inputs(args.inputs, args.input))
    with host:
        try:
            outcome = usecases.denoise_frames(host, opts)
        except DenoiseError as exc:
            raise host.stopped_error(exc) from None
    con.applied(outcome, host.pairs, host.out_dir)
    return EXIT_OK


def cmd_auto(args: argparse.Namespace, con: Console) -> int:
    """Train on some frames, then apply the model to others (or the same)."""
    opts, train_host = _training(args, con, args.train_on)
    apply_host = _frames_host(args, con, gather_inputs(args.apply_to), cancel=train_host.cancel)
    with train_host, apply_host:
        try:
            trained, outcome = usecases.auto(train_host, apply_host, opts)
        except DenoiseError as exc:
            raise apply_host.stopped_error(exc) from None
    con.trained(trained, opts.save_model)
    con.applied(outcome, apply_host.pairs, apply_host.out_dir)
    return EXIT_OK


def cmd_models(args: argparse.Namespace, con: Console) -> int:
    """List, show or delete library models."""
    from .library import ModelLibrary, format_list, format_show

    lib = ModelLibrary(args.library)
    if args.models_command == "list":
        con.summary(format_list(lib))
    elif args.models_command == "show":
        con.summary(format_show(lib.get(args.name)))
    else:
        entry = lib.get(args.name)
        if not args.yes and sys.stdin is not None and sys.stdin.isatty():
            answer = input(f"Delete model {entry.name} ({entry.path})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                con.summary("Nothing deleted.")
                return EXIT_OK
        lib.delete(entry.name)
        con.summary(f"Deleted model {entry.name} from {lib.root}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, con: Console) -> int:
    """Denoise a synthetic faint sub with known truth and score it."""
    from .demo import run_demo

    run_demo(con, _options(args, choice=_image_choice(args.method)), size=args.size, out_dir=args.out)
    return EXIT_OK


def cmd_install_siril(args: argparse.Namespace, con: Console) -> int:
    """Install (or remove) the Siril entry scripts and the engine beside them."""
    from .siril.install import install

    for message in install(args.scripts_dir, uninstall=args.uninstall):
        con.summary(message)
    return EXIT_OK


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------

_positive_float = number(float, 0.0, open_lo=True)
_positive_int = number(int, 0, open_lo=True)


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _network(text: str) -> str:
    """An argparse type: a network name of :func:`siril_denoise.networks.network_names` (imports torch)."""
    from .networks import network_names

    if text not in network_names():
        raise argparse.ArgumentTypeError(f"unknown network {text!r}; choose one of {', '.join(network_names())}")
    return text


def _methods(names: Sequence[str]) -> str:
    """``name: label; ...`` for the help of --method."""
    return "; ".join(f"{n}: {METHODS[n].label}" for n in names)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks."""


def _add_global(parser: argparse.ArgumentParser, sub: bool) -> None:
    """--quiet and -v, accepted before or after the subcommand."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if sub else False,
                        help="no progress bars, only errors and the final summary")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if sub else 0,
                        help="log engine details on stderr (-v INFO, -vv DEBUG)")


def _add_cpu(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", dest="use_gpu", action="store_false", help="use no GPU, for training or inference")


def _add_library(p: argparse.ArgumentParser, default: Any = None) -> None:
    p.add_argument("--library", metavar="DIR", type=_path, default=default,
                   help="model library folder (default: $SIRIL_DENOISE_LIBRARY or the user data folder)")


def _add_image_options(p: argparse.ArgumentParser) -> None:
    """--cfa, --cpu and --library: how frames are read, where the work runs, where models live."""
    p.add_argument("--cfa", default=DEFAULTS.cfa, metavar="PATTERN",
                   help=f"raw Bayer mosaic handling: auto, none, RGGB, BGGR, GRBG or GBRG (default {DEFAULTS.cfa}); "
                        "auto uses the header's BAYERPAT for 2-D (undebayered) images")
    _add_cpu(p)
    _add_library(p)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """Frames as positional IN... or --input GLOB (both spellings of the design)."""
    p.add_argument("inputs", nargs="*", metavar="IN", help="frames: files, folders or quoted globs")
    p.add_argument("--input", "-i", action="extend", nargs="+", metavar="GLOB", default=[],
                   help="frames (same as IN; may be repeated)")


def _add_output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="DIR", type=_path,
                   help="output folder (created if missing)")
    p.add_argument("--prefix", default=DEFAULTS.prefix, help=f"output file name prefix (default {DEFAULTS.prefix})")


def _add_inference(p: argparse.ArgumentParser) -> None:
    add_inference_flags(p)
    p.add_argument("--no-protect", dest="protect", action="store_false",
                   help="do not give back significant non-noise structure (star cores) the network removed")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the inputs)")


def _add_steps(p: argparse.ArgumentParser) -> None:
    """--steps, --time-limit, --seed, --threads: work counted in steps, time only as an optional cap."""
    steps = ", ".join(f"{name} {spec.recipe.steps}" for name, spec in METHODS.items())
    p.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                   help=f"training steps (default: the method's: {steps}); the same "
                        "steps give the same model however busy the machine is")
    p.add_argument("--time-limit", "--time-budget", dest="time_limit", type=_positive_float, default=None,
                   metavar="SEC", help="optional cap on training seconds (default: none); a model it stops "
                                       "early is flagged as cut short")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, metavar="N",
                   help=f"seed of the initial weights and the training crops (default {DEFAULTS.seed}): same input, "
                        "same output")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads for training (default: half the CPUs, fixed whatever the load)")


def _add_single_image_method(p: argparse.ArgumentParser) -> None:
    """--method for denoise and demo: auto (picked by the kind of data) or a method that trains on the image."""
    sub, stack = (default_single_image_method(is_stack, None)[0] for is_stack in (False, True))
    p.add_argument("--method", choices=(AUTO_METHOD, *single_image_methods()), default=AUTO_METHOD,
                   help=f"{AUTO_METHOD} (default): {sub} for a single sub, {stack} for a stack (its noise is "
                        "correlated by registration), as the header tells (STACKCNT, NCOMBINE, LIVETIME/EXPTIME); "
                        f"{_methods(single_image_methods())}; a method named is used on any data")


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", dest="train_method", choices=tuple(METHODS), default=DEFAULTS.train_method,
                   help=f"{_methods(METHODS)} (default {DEFAULTS.train_method})")
    nets = ", ".join(f"{spec.network} for {name}" for name, spec in METHODS.items())
    p.add_argument("--net", type=_network, default=DEFAULTS.net, metavar="NET",
                   help=f"network (default: the method's: {nets})")
    _add_steps(p)
    p.add_argument("--name", default=None, help="name in the library (default: camera_gain_exposure_method_date)")
    p.add_argument("--out", dest="out_dir", metavar="DIR", type=_path, default=None,
                   help="folder for model.onnx and the validation curve (default: a new temporary folder)")
    p.add_argument("--save-model", "--output-model", dest="save_model", metavar="FILE.onnx", type=_path,
                   default=None,
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
    _add_single_image_method(p)
    _add_steps(p)
    p.add_argument("--save-model", metavar="M.onnx", type=_path, default=None,
                   help="also keep the trained model here")
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
    for action, text in (("list", "one line per model"), ("show", "everything known about one model"),
                         ("delete", "remove a model (asks first on a terminal)")):
        m = msub.add_parser(action, help=text, formatter_class=_Help)
        if action != "list":
            m.add_argument("name", metavar="NAME")
        _add_library(m, argparse.SUPPRESS)  # also after the action; SUPPRESS keeps one given before it
    m.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = add("demo", "denoise a synthetic faint sub (no data needed) and score it against the truth",
            "  siril-denoise demo\n"
            "  siril-denoise demo --size 512 --steps 600 --out demo/\n",
            cmd_demo)
    p.add_argument("--size", type=_positive_int, default=256, metavar="N", help="image side in pixels (default 256)")
    _add_single_image_method(p)
    _add_steps(p)
    p.add_argument("--tile", type=tile, default=DEFAULTS.tile, metavar="PX",
                   help=f"inference tile side, also used to measure throughput (default {DEFAULTS.tile})")
    p.add_argument("--out", metavar="DIR", type=_path, default=None,
                   help="write demo_noisy/denoised/truth.fits and demo_model.onnx here (replaced if present)")
    _add_cpu(p)

    p = add("install-siril", "install the scripts in Siril's Scripts menu (or remove them)",
            "  siril-denoise install-siril\n"
            "  siril-denoise install-siril --scripts-dir ~/.siril/scripts\n"
            "  siril-denoise install-siril --uninstall\n",
            cmd_install_siril)
    p.add_argument("--scripts-dir", metavar="DIR", type=_path, default=None,
                   help="Siril script folder (default: ~/.siril/scripts, %%APPDATA%%\\siril\\scripts on Windows)")
    p.add_argument("--uninstall", action="store_true", help="remove what a previous install put there")

    # Placeholder so `bench` shows in --help; main() hands its arguments over untouched.
    sub.add_parser("bench", help="run the benchmark (arguments go to the benchmark; see bench --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if bench_command(argv):
        return run_bench(argv)
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
