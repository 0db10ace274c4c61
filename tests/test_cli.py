"""The `siril-denoise` command, end to end on tiny FITS files (CPU, a few seconds of training).

One zero-shot model is trained once per module (``denoise --save-model
--save-to-library``); the apply, models and library-matching tests reuse it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from siril_denoise import __version__, cli
from siril_denoise.errors import Cancelled
from siril_denoise.io import read_image, write_image
from siril_denoise.library import ModelLibrary
from siril_denoise.synthetic import faint_mono

SIZE = 96
HEADER = {"INSTRUME": "TestCam", "GAIN": 100, "EXPTIME": 10.0, "MYKEY": ("kept", "a keyword nobody knows")}
ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys=None):
    """cli.main in-process; returns (exit code, stdout, stderr)."""
    if capsys is not None:
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_frames(folder: Path, n: int = 3, *, size: int = SIZE, header=HEADER, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = faint_mono((size, size), seed, n_frames=n).frames
    return [write_image(folder / f"light_{k:03d}.fits", frames[k], header=dict(header)) for k in range(n)]


@pytest.fixture(autouse=True)
def no_user_library(tmp_path, monkeypatch):
    """Never touch the real user library, whatever a test forgets to pass."""
    monkeypatch.setenv("SIRIL_DENOISE_LIBRARY", str(tmp_path / "default-library"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `denoise` run: its input, output, saved model, library and printed text."""
    root = tmp_path_factory.mktemp("cli")
    frames = write_frames(root / "lights")
    before = digest(frames[0])
    out = root / "out" / "light_000_dn.fits"
    out.parent.mkdir()
    model = root / "zs.onnx"
    library = root / "library"
    rc, stdout, stderr = run(["denoise", frames[0], "-o", out, "--steps", 60, "--cpu",
                              "--save-model", model, "--save-to-library", "zs_test", "--library", library])
    return dict(root=root, frames=frames, before=before, out=out, model=model, library=library,
                rc=rc, stdout=stdout, stderr=stderr)


# --------------------------------------------------------------------------
# denoise


def test_denoise_writes_output_with_header_and_history(trained):
    assert trained["rc"] == 0, trained["stderr"]
    assert digest(trained["frames"][0]) == trained["before"], "the input file was modified"
    src, out = read_image(trained["frames"][0]), read_image(trained["out"])
    assert out.data.dtype == np.uint16 and out.data.shape == src.data.shape
    assert not np.array_equal(out.data, src.data)
    assert out.header["MYKEY"] == "kept" and out.header["INSTRUME"] == "TestCam"
    history = [str(h) for h in out.header["HISTORY"]]
    assert f"siril-denoise {__version__}: zsn2n strength 1.00" in history
    assert "Quality report" in trained["stdout"] and "Background noise" in trained["stdout"]
    assert f"Wrote {trained['out']}" in trained["stdout"]
    assert "Training zsn2n (zsn2n) on light_000.fits (60 steps, seed 0, on cpu)" in trained["stdout"]
    assert trained["model"].is_file()
    assert ModelLibrary(trained["library"]).names() == ["zs_test"]


def test_denoise_refuses_existing_output_and_input(trained, capsys):
    before = digest(trained["out"])
    rc, _, err = run(["denoise", trained["frames"][0], "-o", trained["out"], "--cpu"], capsys)
    assert rc == 1 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert digest(trained["out"]) == before
    rc, _, err = run(["denoise", trained["frames"][0], "-o", trained["frames"][0], "--overwrite"], capsys)
    assert rc == 1 and "input file" in err
    assert digest(trained["frames"][0]) == trained["before"]


def test_denoise_output_folder_gets_dn_suffix(trained, tmp_path, capsys, monkeypatch):
    # Stop right after the output name is decided: only the naming is under test here.
    import siril_denoise.pipeline as pipeline

    seen = {}

    def fake_denoise(data, **kw):
        seen["called"] = True
        raise Cancelled()

    monkeypatch.setattr(pipeline, "denoise_image", fake_denoise)
    (tmp_path / "light_000_dn.fits").write_bytes(b"x")
    rc, _, err = run(["denoise", trained["frames"][0], "-o", tmp_path], capsys)
    assert rc == 1 and str(tmp_path / "light_000_dn.fits") in err and "called" not in seen
    # OUT ending in "/" is a folder, created when missing.
    rc, _, err = run(["denoise", trained["frames"][0], "-o", f"{tmp_path / 'new'}/"], capsys)
    assert rc == 130 and seen["called"] and "Cancelled" in err
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())


STACK = {**HEADER, "STACKCNT": 12}


def _spy_training(monkeypatch) -> dict:
    """The engine's denoise_image records the method it is asked to train, then cancels."""
    import siril_denoise.pipeline as pipeline

    seen = {}

    def spy(data, **kw):
        seen.setdefault("methods", []).append(kw["method"])
        raise Cancelled()

    monkeypatch.setattr(pipeline, "denoise_image", spy)
    return seen


@pytest.mark.parametrize("header, method", [(STACK, "n2v"), (HEADER, "zsn2n")])
def test_denoise_trains_the_method_for_the_kind_of_data_and_says_why(header, method, tmp_path, capsys,
                                                                     monkeypatch):
    from siril_denoise.methods import METHODS, default_single_image_method

    seen = _spy_training(monkeypatch)
    src = write_frames(tmp_path / "in", 1, size=64, header=header)[0]
    rc, out, err = run(["denoise", src, "-o", tmp_path / "dn.fits", "--cpu", "--steps", 2], capsys)
    assert rc == 130 and seen["methods"] == [method], err
    assert f"Training {method} ({METHODS[method].network}) on light_000.fits (2 steps" in out
    assert default_single_image_method(header is STACK, None)[1] in " ".join(out.split())


def test_a_method_named_is_trained_on_a_stack(tmp_path, capsys, monkeypatch):
    seen = _spy_training(monkeypatch)
    src = write_frames(tmp_path / "in", 1, size=64, header=STACK)[0]
    for method in ("zsn2n", "auto"):
        rc, out, err = run(["denoise", src, "-o", tmp_path / "dn.fits", "--cpu", "--steps", 2, "--method", method],
                           capsys)
        assert rc == 130, err
    assert seen["methods"] == ["zsn2n", "n2v"]
    rc, out, _ = run(["denoise", "--help"], capsys)
    assert "auto (default): zsn2n for a single sub, n2v for a stack" in " ".join(out.split())


def test_quiet_denoise_of_a_stack_trains_n2v_and_says_nothing_more(tmp_path, capsys):
    src = write_frames(tmp_path / "in", 1, size=64, header=STACK)[0]
    rc, out, err = run(["-q", "denoise", src, "-o", tmp_path / "dn.fits", "--cpu", "--steps", 2], capsys)
    assert rc == 0, err
    assert f"siril-denoise {__version__}: n2v strength 1.00" in [str(h) for h in fits.getheader(
        tmp_path / "dn.fits")["HISTORY"]]
    assert [line.split(":")[0] for line in out.splitlines()] == [f"Wrote {tmp_path / 'dn.fits'}"]


def test_nan_image_is_refused_clearly(tmp_path, capsys):
    data = faint_mono((64, 64), 1).frames[0].astype(np.float32) / 65535
    data[10, 10] = np.nan
    path = write_image(tmp_path / "nan.fits", data)
    rc, _, err = run(["denoise", path, "-o", tmp_path / "out.fits", "--cpu", "--steps", 60], capsys)
    assert rc == 1
    assert "error: The image has 1 NaN" in err and "Traceback" not in err
    assert not (tmp_path / "out.fits").exists()


def test_time_limit_that_cuts_training_short_is_said_and_flagged_in_the_library(trained, tmp_path, capsys):
    library = tmp_path / "lib"
    rc, out, err = run(["denoise", trained["frames"][0], "-o", tmp_path / "dn.fits", "--cpu", "--steps", 100000,
                        "--time-limit", 0.5, "--save-to-library", "short", "--library", library], capsys)
    assert rc == 0, err
    assert "warning: The time limit stopped training after" in out and "of 100000 steps" in out
    rc, out, _ = run(["models", "list", "--library", library], capsys)
    assert rc == 0 and "short" in out and "WARNING: cut short at" in out
    rc, out, _ = run(["models", "show", "short", "--library", library], capsys)
    assert "WARNING:" in out and "time limit" in out


def test_bad_strength_is_a_usage_error(trained, capsys):
    rc, _, err = run(["denoise", trained["frames"][0], "-o", "x.fits", "--strength", "2"], capsys)
    assert rc == 2 and "between 0" in err
    rc, _, err = run(["apply", trained["frames"][0], "-o", "dn", "--tile", "16"], capsys)
    assert rc == 2 and "32 to 4096" in err


# --------------------------------------------------------------------------
# apply


def test_apply_positional_spelling(trained, tmp_path, capsys):
    frames = trained["frames"]
    before = [digest(f) for f in frames]
    rc, out, err = run(["apply", "--model", trained["model"], *frames, "-o", tmp_path / "dn", "--cpu"], capsys)
    assert rc == 0, err
    written = sorted(p.name for p in (tmp_path / "dn").iterdir())
    assert written == [f"dn_{f.name}" for f in frames]
    assert [digest(f) for f in frames] == before
    img = read_image(tmp_path / "dn" / f"dn_{frames[1].name}")
    assert img.data.dtype == np.uint16 and img.header["MYKEY"] == "kept"
    assert f"siril-denoise {__version__}: zs strength 1.00" in [str(h) for h in img.header["HISTORY"]]
    assert "Denoised 3 frame(s)" in out


def test_apply_input_output_spelling_with_library_name(trained, tmp_path, capsys):
    frames = trained["frames"]
    before = [digest(f) for f in frames]
    pattern = str(frames[0].parent / "light_*.fits")
    rc, out, err = run(["apply", "--model", "zs_test", "--library", trained["library"], "--input", pattern,
                        "--output", tmp_path / "dn", "--prefix", "x_", "--cpu", "--quiet"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "dn").iterdir()) == [f"x_{f.name}" for f in frames]
    assert [digest(f) for f in frames] == before
    assert out.strip().startswith("Denoised 3 frame(s)")  # --quiet: the summary only


def test_apply_refuses_to_replace_inputs_or_outputs(trained, tmp_path, capsys):
    frames = trained["frames"]
    rc, _, err = run(["apply", "--model", trained["model"], *frames, "-o", frames[0].parent, "--prefix", ""],
                     capsys)
    assert rc == 1 and "prefix" in err
    (tmp_path / "dn").mkdir()
    (tmp_path / "dn" / f"dn_{frames[2].name}").write_bytes(b"old")
    rc, _, err = run(["apply", "--model", trained["model"], *frames, "-o", tmp_path / "dn"], capsys)
    assert rc == 1 and "already exist" in err
    assert sorted(p.name for p in (tmp_path / "dn").iterdir()) == [f"dn_{frames[2].name}"]


def test_apply_mono_model_on_rgb_image_is_refused(trained, tmp_path, capsys):
    rgb = np.stack([faint_mono((64, 64), s).frames[0] for s in range(3)])
    path = write_image(tmp_path / "rgb.fits", rgb)
    rc, _, err = run(["apply", "--model", trained["model"], path, "-o", tmp_path / "dn", "--cpu"], capsys)
    assert rc == 1 and "Traceback" not in err
    assert "mono" in err and "3-channel" in err
    assert "0 of 1 frame(s) were written" in err
    assert not (tmp_path / "dn").exists()  # created only when the first frame is written


def test_apply_stops_at_a_bad_frame_and_says_how_many_were_done(trained, tmp_path, capsys):
    frames = [shutil.copy(f, tmp_path / f.name) for f in trained["frames"][:2]]
    bad = faint_mono((SIZE, SIZE), 5).frames[0].astype(np.float32)
    bad[3, 3] = np.inf
    write_image(tmp_path / "light_009.fits", bad, header=dict(HEADER))
    rc, _, err = run(["apply", "--model", trained["model"], "--input", str(tmp_path / "*.fits"),
                      "--output", tmp_path / "dn", "--cpu"], capsys)
    assert rc == 1 and "light_009.fits" in err and "infinite" in err
    assert "2 of 3 frame(s) were written" in err
    assert sorted(p.name for p in (tmp_path / "dn").iterdir()) == [f"dn_{Path(f).name}" for f in frames]


def test_apply_without_model_picks_a_library_match(trained, tmp_path, capsys):
    library = tmp_path / "library"
    shutil.copytree(trained["library"], library)
    rc, out, err = run(["apply", trained["frames"][0], "-o", tmp_path / "dn", "--library", library, "--cpu"],
                       capsys)
    assert rc == 0, err
    assert "Using library model zs_test" in out
    # A frame from another camera: no usable model, and the reason is given.
    other = write_frames(tmp_path / "other", 1, header={**HEADER, "INSTRUME": "OtherCam"})[0]
    rc, _, err = run(["apply", other, "-o", tmp_path / "dn2", "--library", library, "--cpu"], capsys)
    assert rc == 1 and "zs_test" in err and "OtherCam" in err


# --------------------------------------------------------------------------
# models


def test_models_list_show_delete(trained, tmp_path, capsys, monkeypatch):
    library = tmp_path / "library"
    shutil.copytree(trained["library"], library)
    rc, out, _ = run(["models", "list", "--library", library], capsys)
    assert rc == 0 and "1 model in" in out and "zs_test" in out and "zsn2n" in out
    rc, out, _ = run(["models", "--library", library, "show", "zs_test"], capsys)
    assert rc == 0 and "Model zs_test" in out and "TestCam" in out
    rc, _, err = run(["models", "show", "nope", "--library", library], capsys)
    assert rc == 1 and "nope" in err and "zs_test" in err

    # On a terminal, delete asks first; "n" keeps the model.
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    rc, out, _ = run(["models", "delete", "zs_test", "--library", library], capsys)
    assert rc == 0 and "Nothing deleted" in out and ModelLibrary(library).names() == ["zs_test"]
    rc, out, _ = run(["models", "delete", "zs_test", "--yes", "--library", library], capsys)
    assert rc == 0 and ModelLibrary(library).names() == []
    rc, out, _ = run(["models", "list", "--library", library], capsys)
    assert rc == 0 and "No models" in out


# --------------------------------------------------------------------------
# train / auto


def test_train_one_frame_suggests_zero_shot(trained, tmp_path, capsys):
    rc, _, err = run(["train", "--input", trained["frames"][0], "--library", tmp_path / "lib"], capsys)
    assert rc == 1 and "zsn2n" in err and "at least 2 frames" in err
    assert not (tmp_path / "lib").exists()


def test_train_mixed_sizes_is_refused(tmp_path, capsys):
    write_frames(tmp_path / "lights", 2)
    write_image(tmp_path / "lights" / "light_big.fits", faint_mono((128, 96), 3).frames[0])
    rc, _, err = run(["train", "--input", str(tmp_path / "lights" / "*.fits"), "--library", tmp_path / "lib",
                      "--steps", 60, "--cpu"], capsys)
    assert rc == 1 and "light_big.fits" in err and "same size" in err
    assert not (tmp_path / "lib").exists()


def test_train_ctrl_c_cancels_cleanly(trained, tmp_path, capsys, monkeypatch):
    """A real SIGINT during training: exit 130, nothing added to the library."""
    import siril_denoise.pipeline as pipeline

    def fake_train(frames, *, should_cancel, **kw):
        os.kill(os.getpid(), signal.SIGINT)  # the handler only raises a flag...
        assert should_cancel()  # ...that the engine polls
        raise Cancelled()

    monkeypatch.setattr(pipeline, "train_on_frames", fake_train)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in the background
    rc, _, err = run(["train", *trained["frames"], "--library", tmp_path / "lib", "--cpu"], capsys)
    assert rc == 130 and "Cancelled" in err
    assert ModelLibrary(tmp_path / "lib").names() == []
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_auto_trains_saves_and_applies(trained, tmp_path, capsys):
    frames = trained["frames"]
    pattern = str(frames[0].parent / "light_*.fits")
    rc, out, err = run(["auto", "--train-on", frames[0], frames[1], "--apply-to", pattern,
                        "--output", tmp_path / "dn", "--method", "zsn2n", "--steps", 60, "--cpu",
                        "--name", "auto_zs", "--library", tmp_path / "lib", "--out", tmp_path / "run"], capsys)
    assert rc == 0, err
    assert ModelLibrary(tmp_path / "lib").names() == ["auto_zs"]
    assert "as auto_zs" in out and str(tmp_path / "run" / "training_curve.csv") in out
    assert (tmp_path / "run" / "training_curve.csv").is_file()
    record = json.loads((tmp_path / "lib" / "auto_zs-frames.json").read_text())
    assert [f["file"] for f in record["frames"]] == [str(f.resolve()) for f in frames[:2]]
    assert sorted(p.name for p in (tmp_path / "dn").iterdir()) == [f"dn_{f.name}" for f in frames]
    # Same name again: refused before any training.
    rc, _, err = run(["train", *frames[:2], "--method", "zsn2n", "--name", "auto_zs",
                      "--library", tmp_path / "lib"], capsys)
    assert rc == 1 and "already in the library" in err


# --------------------------------------------------------------------------
# help, demo, bench, subprocess runs


@pytest.mark.parametrize("argv", [
    [], ["denoise"], ["train"], ["apply"], ["auto"], ["models"], ["models", "list"], ["models", "show"],
    ["models", "delete"], ["demo"], ["install-siril"],
])
def test_help_for_every_subcommand(argv, capsys):
    rc, out, _ = run([*argv, "--help"], capsys)
    assert rc == 0 and "usage: siril-denoise" in out
    if argv and argv[0] != "models":
        assert "examples:" in out


def test_usage_error_exit_code(capsys):
    rc, _, err = run(["apply", "--bogus"], capsys)
    assert rc == 2 and "usage:" in err


def test_bench_passes_arguments_through(monkeypatch, capsys):
    import types

    got = {}
    fake = types.ModuleType("siril_denoise.bench")
    fake.main = lambda argv: got.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "siril_denoise.bench", fake)
    import siril_denoise

    monkeypatch.setattr(siril_denoise, "bench", fake, raising=False)
    assert cli.main(["-q", "bench", "--help", "--size", "64", "x"]) == 0
    assert got["argv"] == ["--help", "--size", "64", "x"]


def test_only_global_options_may_come_before_bench():
    from siril_denoise.bench_entry import bench_command

    assert bench_command(["-q", "-vv", "bench", "--x"]) and bench_command(["--verbose", "bench"])
    assert not bench_command(["apply", "bench"]) and not bench_command(["-vx", "bench"]) and not bench_command([])


def test_install_siril_and_uninstall(tmp_path, capsys):
    rc, out, err = run(["install-siril", "--scripts-dir", tmp_path / "scripts"], capsys)
    assert rc == 0, err
    assert (tmp_path / "scripts" / "SirilDenoise_Image.py").is_file() and "Installed" in out
    rc, out, _ = run(["install-siril", "--scripts-dir", tmp_path / "scripts", "--uninstall"], capsys)
    assert rc == 0 and not (tmp_path / "scripts" / "SirilDenoise_Image.py").exists()


def _python(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300, **kw)


def test_demo_subprocess_prints_report_and_psnr(tmp_path):
    proc = _python("-m", "siril_denoise", "--quiet", "demo", "--size", "64", "--steps", "60", "--cpu",
                   "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Quality report" in proc.stdout
    assert "PSNR against the truth" in proc.stdout and "display-stretched" in proc.stdout
    assert "megapixels/s" in proc.stdout
    noisy = fits.getdata(tmp_path / "demo_noisy.fits")
    assert noisy.shape == (64, 64) and (tmp_path / "demo_denoised.fits").is_file()


def test_help_and_models_list_do_not_import_torch(trained):
    code = ("import sys; from siril_denoise.cli import main; "
            f"rc = main(['models', 'list', '--library', {str(trained['library'])!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'; "
            "rc = main(['--help']); assert 'torch' not in sys.modules")
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "zs_test" in proc.stdout


# --------------------------------------------------------------------------
# everything is checked before any work or write


def test_denoise_refuses_a_wrong_output_extension_before_training(trained, tmp_path, capsys, monkeypatch):
    import siril_denoise.pipeline as pipeline

    monkeypatch.setattr(pipeline, "denoise_image", lambda *a, **k: pytest.fail("trained before checking"))
    rc, _, err = run(["denoise", trained["frames"][0], "-o", tmp_path / "out.png", "--cpu"], capsys)
    assert rc == 1 and "unsupported file type" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_a_folder_given_as_an_image_is_named_a_folder(tmp_path, capsys):
    rc, _, err = run(["denoise", tmp_path, "-o", tmp_path / "out.fits", "--cpu"], capsys)
    assert rc == 1 and "is a folder" in err and "unsupported file type" not in err


def test_apply_with_an_unknown_model_creates_no_output_folder(trained, tmp_path, capsys):
    rc, _, err = run(["apply", "--model", "no_such_model", "--library", trained["library"],
                      trained["frames"][0], "-o", tmp_path / "dn", "--cpu"], capsys)
    assert rc == 1 and "no_such_model" in err
    assert not (tmp_path / "dn").exists()


# --------------------------------------------------------------------------
# the command is argparse and printing over the use-case layer


def test_cli_imports_neither_the_pipeline_nor_training_and_stays_short():
    import ast

    source = (ROOT / "siril_denoise" / "cli.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module or ''}.{a.name}".strip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    engine = {m for m in imported if m.split(".")[-1] in ("pipeline", "training")}
    assert not engine, f"cli.py imports {engine}"
    assert len(source.splitlines()) <= 450


def test_defaults_are_the_options_defaults():
    from dataclasses import fields

    from siril_denoise.usecases import ZERO_SHOT, Options

    parser, defaults = cli.build_parser(), Options()
    for argv in (["denoise", "x.fits", "-o", "y.fits"], ["train", "x.fits"], ["apply", "x.fits", "-o", "d"],
                 ["auto", "--train-on", "a", "--apply-to", "b", "-o", "d"], ["demo"]):
        args = parser.parse_args(argv)
        given = {f.name: getattr(args, f.name) for f in fields(Options) if hasattr(args, f.name)}
        assert len(given) >= 6, argv
        for name, value in given.items():
            assert value == getattr(defaults, name), (argv, name)
        if argv[0] in ("denoise", "demo"):  # --method: auto, Options' ZERO_SHOT (the method for the data)
            assert args.method == cli.AUTO_METHOD and cli._image_choice(args.method) == ZERO_SHOT


def test_method_choices_come_from_the_registry(monkeypatch, capsys):
    import dataclasses

    from siril_denoise import methods

    monkeypatch.setitem(methods.METHODS, "toy", dataclasses.replace(methods.METHODS["zsn2n"], name="toy",
                                                                    label="a toy method"))
    args = cli.build_parser().parse_args(["denoise", "x.fits", "-o", "y.fits", "--method", "toy"])
    assert cli._image_choice(args.method) == "toy"
    rc, out, _ = run(["train", "--help"], capsys)
    assert rc == 0 and "toy: a toy method" in " ".join(out.split())
    rc, _, err = run(["train", "x.fits", "--net", "no_such_net"], capsys)
    assert rc == 2 and "no_such_net" in err and "unet" in err


def test_auto_ctrl_c_during_training_reaches_the_training(trained, tmp_path, capsys, monkeypatch):
    """auto holds two frame hosts; both share one Ctrl-C handler, so training sees the request."""
    import siril_denoise.pipeline as pipeline

    def fake_train(frames, *, should_cancel, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        assert should_cancel(), "the Ctrl-C did not reach the training"
        raise Cancelled()

    monkeypatch.setattr(pipeline, "train_on_frames", fake_train)
    before = signal.getsignal(signal.SIGINT)
    rc, _, err = run(["auto", "--train-on", *trained["frames"], "--apply-to", trained["frames"][0],
                      "-o", tmp_path / "dn", "--library", tmp_path / "lib", "--cpu"], capsys)
    assert rc == 130 and "Cancelled" in err and "AssertionError" not in err
    assert not (tmp_path / "dn").exists() and signal.getsignal(signal.SIGINT) is before
