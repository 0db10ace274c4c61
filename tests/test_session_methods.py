"""Issue 3's comparison on a synthetic 8-frame session with known truth.

Noise2Noise across the frames has what the single-image methods lack: a
second, independent look at the same sky. With the same small network and
no more CPU time, it must come closer to the truth than Neighbor2Neighbor
and Zero-Shot N2N on the reference frame (stretched PSNR), clean the sky
better than ZS-N2N and about as well as NB2NB, while keeping star fluxes
within 1 % and creating no clipped or zero pixels. (NB2NB smooths the sky a
little more, 6.0× against 5.8× with the U-Net at 150 s in the benchmark, and
pays for it in the stars: 2 dB lower PSNR.)
(The benchmark measures the default U-Net with real budgets; the tiny
network keeps this test within CI's time. Steps per method are set so each
single-image method trains for at least the CPU time of n2n: with this
network on one thread a step took 0.06 s for n2n (64² crops), 0.12 s for
ZS-N2N and 0.14 s for NB2NB (96² crops), so 300 n2n steps train for ~18 s,
225 ZS-N2N steps for ~27 s and 375 NB2NB steps for ~52 s. At these steps
n2n led by 1.8 dB (ZS-N2N) and 3.8 dB (NB2NB); at the 800/400/1000 steps
used before, which cost 2.2x the CPU time, by 1.9 and 3.5 dB.)
"""

import numpy as np
import pytest

from siril_denoise.bench.metrics import StarSet, score
from siril_denoise.bench.scenes import make_bench_scene
from siril_denoise.layout import to_working
from siril_denoise.pipeline import apply_model, denoise_image, train_on_frames

STEPS = {"n2n": 300, "zsn2n": 225, "nb2nb": 375}
# The same small network for every method: ZS-N2N's own default is a 4-layer net on 24² crops, which
# this comparison (and its CPU-time accounting above) does not use.
# n2n keeps single targets here: its default averaged targets were chosen with the U-Net (+0.5 dB over
# three seeds of the faint 512² session, docs/benchmark.md); with this tiny net on this scene they measured
# 47.04 dB against 47.85 and star flux +1.07 % against +0.90 %.
RECIPES = {"zsn2n": {"net_options": {"depth": 2}, "crop": 64}, "n2n": {"method_options": {"targets": 1}}}
SIZE = 128
NET = "zsn2n"


@pytest.fixture(scope="module")
def session_scores(tmp_path_factory):
    scene = make_bench_scene("faint_mono", size=SIZE, n_frames=8, seed=3)
    noisy = to_working(scene.frames[0])[0]
    truth = to_working(scene.truth)[0]
    stars = StarSet(truth, noisy, scene.star_x, scene.star_y, scene.fwhm, scene.saturation)
    common = dict(net=NET, time_budget=None, use_gpu=False, seed=0)
    out = {}
    tm = train_on_frames(scene.frames, homographies=scene.homographies, method="n2n", max_steps=STEPS["n2n"],
                         recipe=RECIPES["n2n"], out_dir=tmp_path_factory.mktemp("n2n"), **common)
    out["n2n"] = apply_model(scene.frames[0], tm.onnx_path, use_gpu=False).data
    for m in ("nb2nb", "zsn2n"):
        out[m] = denoise_image(scene.frames[0], method=m, max_steps=STEPS[m], recipe=RECIPES.get(m), **common).data
    scores = {k: score(to_working(v)[0], truth, noisy, stars, saturation=scene.saturation,
                       data_range=scene.data_range) for k, v in out.items()}
    scores["input"] = score(noisy, truth, noisy, stars, saturation=scene.saturation, data_range=scene.data_range)
    return scores, len(stars)


def test_noise2noise_beats_the_single_image_methods(session_scores):
    s, _ = session_scores
    for m in ("nb2nb", "zsn2n"):
        assert s["n2n"]["psnr_stretched"] > s[m]["psnr_stretched"] + 1.0, m  # dB
    assert s["n2n"]["sky_error_reduction"] > s["zsn2n"]["sky_error_reduction"]
    assert s["n2n"]["sky_error_reduction"] > 0.9 * s["nb2nb"]["sky_error_reduction"]
    assert s["n2n"]["psnr_stretched"] > s["input"]["psnr_stretched"] + 6  # dB
    assert s["n2n"]["sky_error_reduction"] > 3


def test_noise2noise_keeps_star_flux_sky_level_and_range(session_scores):
    s, n_stars = session_scores
    assert n_stars >= 5
    assert abs(s["n2n"]["flux_err_median"]) < 0.01
    assert abs(s["n2n"]["bias_sigma"]) < 0.05
    assert s["n2n"]["new_clipped"] == 0 and s["n2n"]["new_zero"] == 0
