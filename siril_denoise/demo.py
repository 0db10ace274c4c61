"""``siril-denoise demo``: denoise a synthetic faint sub whose truth is known, and score it.

No data is needed: :func:`siril_denoise.synthetic.demo_frame` makes a faint
mono uint16 sub (background SNR about 2, with stars); a zero-shot method
trains on it, and the result is scored against the noise-free truth (PSNR,
linear and after a display stretch) with the inference throughput.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from . import __version__, usecases
from .console import Console, Terminal, work_text
from .errors import InputError
from .methods import method_spec


class _Synthetic(Terminal):
    """The demo's image host: the synthetic sub in memory, its result kept in :attr:`denoised`."""

    def __init__(self, con: Console, noisy: Any) -> None:
        super().__init__(con, "demo")
        self.noisy, self.denoised = noisy, None

    def read_image(self) -> tuple[Any, Any]:
        return self.noisy, None

    def write_image(self, data: Any, note: str) -> None:
        self.denoised = data


def run_demo(con: Console, opts: usecases.Options, *, size: int = 256, out_dir: Path | None = None) -> None:
    """Train the single-image method of ``opts.choice`` on a synthetic ``size`` x ``size`` sub; print the
    report, the PSNR against the truth and the inference speed on tiles of ``opts.tile`` pixels.

    With ``out_dir``, demo_noisy/denoised/truth.fits and demo_model.onnx are
    written there (replacing earlier ones).
    """
    import numpy as np

    from .inference import OnnxDenoiser, measure_throughput
    from .measure import display_stretch, psnr, stretch_params_from
    from .synthetic import demo_frame

    if size < 32:
        raise InputError("--size must be at least 32 pixels.")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    noisy, truth, stars = demo_frame(size)
    con.summary(f"Demo: a synthetic faint mono sub, {size}×{size} uint16, background SNR ≈ 2, "
                f"{len(stars)} stars, noise-free truth known.")
    method, _ = usecases.single_image_method(opts, None, None)  # a sub: its meta is None, as _Synthetic's
    work = work_text(opts.steps or method_spec(method).recipe.steps, opts.seed, opts.time_limit)
    con.info(f"Training {method} on the image itself ({work}, {'GPU if available' if opts.use_gpu else 'CPU'})...")
    with tempfile.TemporaryDirectory(prefix="siril-denoise-demo-") as tmp:
        model_path = (out_dir / "demo_model.onnx") if out_dir else Path(tmp) / "model.onnx"
        if model_path.exists():
            model_path.unlink()
        with _Synthetic(con, noisy) as host:
            result = usecases.denoise_image(host, dataclasses.replace(opts, save_model=model_path)).result
        con.training_notes(result.model_metadata)
        den = OnnxDenoiser(model_path, use_gpu=opts.use_gpu)
        side = max(den.multiple, (opts.tile // den.multiple) * den.multiple)
        mps = measure_throughput(den, (1, den.channels, side, side), repeats=3)
        providers = ", ".join(den.providers)

    con.summary(result.report.as_text())
    params = stretch_params_from(truth)
    span = params["white"] - params["black"]
    stretched_truth = display_stretch(truth, **params)
    con.summary("PSNR against the truth (noisy → denoised)")
    for label, score in (("linear (ADU)", lambda x: psnr(x, truth, span)),
                         ("display-stretched (asinh)",
                          lambda x: psnr(display_stretch(x, **params), stretched_truth, 1.0))):
        before, after = score(noisy.astype(np.float32)), score(result.data.astype(np.float32))
        con.summary(f"  {label:<27} {before:6.1f} dB → {after:6.1f} dB  ({after - before:+.1f} dB)")
    con.summary(f"Inference: {mps:.2f} megapixels/s (onnxruntime, {providers}, {side}×{side} tiles)")

    if out_dir is not None:
        from .io import write_image

        for name, data, what in (("demo_noisy.fits", noisy, "synthetic noisy sub"),
                                 ("demo_denoised.fits", result.data, f"{method}, strength 1"),
                                 ("demo_truth.fits", truth.astype(np.float32), "noise-free truth (ADU)")):
            write_image(out_dir / name, data, history=f"siril-denoise {__version__} demo: {what}", overwrite=True)
        con.summary(f"Wrote demo_noisy.fits, demo_denoised.fits, demo_truth.fits and demo_model.onnx to {out_dir}")
