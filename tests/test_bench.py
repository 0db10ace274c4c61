"""The benchmark: runner output shape, metric correctness on constructed cases, real-data skip."""

import json

import numpy as np
import pytest

from siril_denoise import bench
from siril_denoise.bench.metrics import StarSet, aperture_snr, score
from siril_denoise.bench.real import MIN_SNR, StackComparison, run_real
from siril_denoise.bench.scenes import make_bench_scene
from siril_denoise.layout import to_working


@pytest.fixture(scope="module")
def faint_scene():
    return make_bench_scene("faint_mono", size=160, n_frames=3, seed=2)


def _score(scene, out):
    noisy = to_working(scene.noisy)[0]
    truth = to_working(scene.truth)[0]
    stars = StarSet(truth, noisy, scene.star_x, scene.star_y, scene.fwhm, scene.saturation)
    return score(out, truth, noisy, stars, saturation=scene.saturation, data_range=scene.data_range), truth, noisy


def test_perfect_denoiser_scores_zero_bias_and_flux_error(faint_scene):
    truth = to_working(faint_scene.truth)[0]
    s, _, noisy = _score(faint_scene, truth)
    assert s["psnr_linear"] == float("inf") and s["psnr_stretched"] == float("inf")
    assert s["ssim_stretched"] == pytest.approx(1.0)
    assert s["bias_sigma"] == pytest.approx(0.0, abs=1e-9)
    assert s["n_stars"] >= 3
    assert s["flux_err_median"] == pytest.approx(0.0, abs=1e-9)
    assert s["flux_err_p90"] == pytest.approx(0.0, abs=1e-9)
    assert s["fwhm_ratio"] == pytest.approx(1.0)
    assert s["new_zero"] == 0 and s["new_clipped"] == 0
    assert s["sky_error_reduction"] == float("inf")


def test_half_noise_and_darkened_images(faint_scene):
    _, truth, noisy = _score(faint_scene, to_working(faint_scene.noisy)[0])
    half, _, _ = _score(faint_scene, truth + 0.5 * (noisy - truth))
    assert half["sky_error_reduction"] == pytest.approx(2.0, rel=1e-6)
    assert half["noise_reduction"] == pytest.approx(2.0, rel=0.1)
    assert abs(half["bias_sigma"]) < 0.05
    s_in, _, _ = _score(faint_scene, noisy)
    assert half["psnr_stretched"] > s_in["psnr_stretched"] + 3
    sigma = float(np.std(noisy - truth))
    dark, _, _ = _score(faint_scene, truth - 0.3 * sigma)
    assert dark["bias_sigma"] < -0.2
    # every star 10 % fainter (a constant added back: the annulus background removes it)
    dim, _, _ = _score(faint_scene, 0.9 * truth + 0.1 * float(np.median(truth)))
    assert dim["flux_err_median"] == pytest.approx(-0.1, abs=1e-6)


def test_runner_writes_table_and_json(tmp_path, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = bench.main(["--scenario", "faint_mono", "--methods", "gaussian,mean,zsn2n", "--size", "64",
                     "--frames", "3", "--steps", "20", "--out", str(out), "--markdown", str(md)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| method | PSNR lin dB | PSNR str dB | SSIM str |" in text
    assert "Gaussian" in text and "mean of N frames" in text and "ZS-N2N" in text
    res = json.loads(out.read_text())
    rows = res["scenarios"]["faint_mono"]["rows"]
    assert [r["method"] for r in rows] == ["input", "gaussian", "mean", "zsn2n"]
    for r in rows:
        for key in ("psnr_linear", "psnr_stretched", "ssim_stretched", "noise_reduction", "bias_sigma",
                    "flux_err_median", "new_zero", "new_clipped"):
            assert key in r
    assert {"seconds", "peak_mb"} <= rows[1].keys()  # recorded; speed is the benchmark's to report, not a test's
    assert "train_seconds" in rows[3] and rows[3]["train_steps"] == 20
    assert "cpu" in res["machine"] and "versions" in res["machine"]
    assert md.read_text().startswith("# Benchmark results")


def test_a_failing_method_keeps_the_other_rows_and_makes_the_exit_status_1(monkeypatch, capsys):
    from siril_denoise.bench import runner

    def broken(work, packed=False):
        raise RuntimeError("no luck")

    monkeypatch.setitem(runner.BASELINES, "wavelet", broken)
    rc = bench.main(["--scenario", "faint_mono", "--methods", "gaussian,wavelet", "--size", "64", "--frames", "3"])
    out, err = capsys.readouterr()
    assert rc == 1 and "error: faint_mono: wavelet: failed: no luck" in err
    assert "Gaussian" in out


def test_aperture_snr_of_a_flux_on_white_noise():
    rng = np.random.default_rng(0)
    noisy = rng.normal(1000.0, 10.0, (1, 256, 256)).astype(np.float32)  # a = 0: no shot noise
    radii = (3.0, 5.0, 9.0)
    n_ap, n_ann = np.pi * 9.0, np.pi * (81.0 - 25.0)
    expected = 500.0 / (10.0 * np.sqrt(n_ap * (1 + n_ap / n_ann)))
    assert aperture_snr(np.array([500.0]), noisy, radii, packed=False)[0] == pytest.approx(expected, rel=0.05)


def _stack_case(flux: np.ndarray, seed: int = 0):
    """A superpixel 'stack' of Gaussian stars (σ 12) and a noisy 4-plane frame of it (sky 4×1000, σ 20 each)."""
    rng = np.random.default_rng(seed)
    h = w = 240
    yy, xx = np.mgrid[:h, :w]
    pos = [(30 + 45 * (i % 4), 30 + 45 * (i // 4)) for i in range(len(flux))]
    stars = sum(f / (2 * np.pi) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0) for f, (x, y) in zip(flux, pos))
    stack = (4000.0 + stars + rng.normal(0, 12.0, (h, w))).astype(np.float32)
    clean = np.repeat(stack[None] / 4, 4, axis=0)  # the stack itself, as 4 planes
    raw = (clean + rng.normal(0, 20.0, clean.shape)).astype(np.float32)
    return stack, np.full((h, w), 11), raw, clean, stars


def test_stack_comparison_scores_stars_one_sub_can_measure():
    # aperture noise ≈ 40·sqrt(28·1.15) ≈ 230: fluxes 20000 and 10000 are measurable (SNR ≫ 5), 1000 is not
    flux = np.array([20000.0] * 4 + [10000.0] * 4 + [1000.0] * 4)
    stack, count, raw, clean, stars = _stack_case(flux)
    cmp = StackComparison(stack, count, raw)
    assert int(cmp.good.sum()) == 8 and int(cmp.found.sum()) >= 10
    assert np.all(cmp.snr[cmp.good] >= MIN_SNR)
    perfect = cmp.score(clean)
    assert perfect["n_stars"] == 8
    assert perfect["flux_ratio_median"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["flux_rms_error"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["all_flux_ratio_median"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["sky_rms_vs_stack"] == pytest.approx(0.0, abs=1e-3)
    noisy = cmp.score(raw)
    assert noisy["sky_rms_vs_stack"] == pytest.approx(40.0, rel=0.05)  # 4 planes of σ 20 summed
    assert 0 < noisy["flux_rms_error"] < 0.05
    # a denoiser that halves every star: the scored ratio says so
    halved = cmp.score(clean - np.repeat(0.5 * stars[None] / 4, 4, axis=0).astype(np.float32))
    assert halved["flux_ratio_median"] == pytest.approx(0.5, abs=0.02)
    assert halved["flux_rms_error"] == pytest.approx(0.5, abs=0.02)


def test_real_path_skips_cleanly_without_data(tmp_path):
    res = run_real(tmp_path / "nowhere", ["gaussian"], quick=True)
    assert res["rows"] == [] and "skipped" in res["skipped"]
    assert bench.main(["--scenario", "real", "--methods", "gaussian", "--real-dir", str(tmp_path)]) == 0


def test_sweep_specs_become_pipeline_recipes():
    from siril_denoise.bench.sweep import parse_spec

    r = parse_spec("levels=2,features=32,steps=800,lr=1e-3,crop=64,bf16=1")
    assert r == {"max_steps": 800, "lr": 1e-3, "crop": 64, "bf16": 1.0, "net_options": {"levels": 2, "features": 32}}
