"""Siril's own ``denoise`` as a bench baseline: the real siril-cli where installed, the n/a row where not."""

from pathlib import Path

import numpy as np
import pytest

from siril_denoise import bench
from siril_denoise.bench import runner, siril_baseline
from siril_denoise.bench.metrics import StarSet, score
from siril_denoise.bench.scenes import make_bench_scene
from siril_denoise.layout import to_working

needs_siril = pytest.mark.skipif(not siril_baseline.siril_available(),
                                 reason=f"{siril_baseline.SIRIL_CLI} not installed")


@pytest.fixture(scope="module")
def scene():
    return make_bench_scene("faint_mono", size=96, n_frames=2, seed=0)


@needs_siril
def test_siril_load_save_returns_the_image_unchanged():
    """No flip, no rescaling: an asymmetric image in ADU and a colour cube in [0, 1] come back bit for bit."""
    mono = np.full((1, 40, 60), 200.0, dtype=np.float32)
    mono[0, 5:10, 3:8] = 5000.5
    mono[0, 30, 50] = 40000.0
    back = siril_baseline.siril_fits_roundtrip(mono, denoise=False)
    assert back.dtype == np.float32 and np.array_equal(back, mono)
    rgb = np.stack([mono[0], 0.5 * mono[0], 0.25 * mono[0]]) / np.float32(65535)
    assert np.array_equal(siril_baseline.siril_fits_roundtrip(rgb, denoise=False), rgb)


@needs_siril
@pytest.mark.parametrize("method", ["siril-nlbayes", "siril-nlbayes-vst"])
def test_siril_row_denoises_a_faint_sub(scene, method):
    noisy = to_working(scene.noisy)[0]
    truth = to_working(scene.truth)[0]
    out, info = runner.denoise(method, scene)
    assert out is not None, info
    assert out.shape == noisy.shape and out.dtype == np.float32
    stars = StarSet(truth, noisy, scene.star_x, scene.star_y, scene.fwhm, scene.saturation)
    s = score(out, truth, noisy, stars, saturation=scene.saturation, data_range=scene.data_range)
    assert s["sky_error_reduction"] > 3  # background noise against the truth, input / output
    assert abs(s["bias_sigma"]) < 0.2  # sky level kept, in units of the input noise
    # the same orientation and the data's own units
    corr = np.corrcoef(out.ravel(), truth.ravel())[0, 1]
    flipped = np.corrcoef(out.ravel(), truth[:, ::-1].ravel())[0, 1]
    assert corr > 0.99 and flipped < 0.5
    assert abs(float(np.median(out)) / float(np.median(truth)) - 1) < 0.05
    assert runner.label_of(method).startswith(f"Siril {siril_baseline.siril_version()} denoise")


def test_siril_rows_are_na_without_siril(scene, monkeypatch):
    monkeypatch.setattr(siril_baseline, "SIRIL_CLI", Path("/nonexistent/siril-cli"))
    rows = runner.run_scene(scene, ["siril-nlbayes", "siril-nlbayes-vst"])
    assert [r["method"] for r in rows] == ["input", "siril-nlbayes", "siril-nlbayes-vst"]
    for r in rows[1:]:
        assert r["note"] == "n/a: needs Siril's siril-cli (/nonexistent/siril-cli not found)"
        assert r["label"].startswith("Siril 1.4.4 denoise")
    assert "siril-nlbayes" not in runner.default_methods()
    assert "siril-nlbayes" not in bench.build_parser().parse_args([]).methods
    assert "siril-nlbayes" in runner.METHODS


def test_siril_rows_are_na_on_raw_bayer_planes():
    work = np.ones((4, 16, 16), dtype=np.float32)
    with pytest.raises(siril_baseline.NotApplicable, match="raw CFA planes"):
        siril_baseline.siril_nlbayes(work, packed=True)


def test_siril_log_times():
    assert siril_baseline.siril_seconds("NL-Bayes execution time: 1 min 02 s", "NL-Bayes") == 62.0
    assert siril_baseline.siril_seconds("NL-Bayes execution time: 9.71 s", "NL-Bayes") == 9.71
    assert siril_baseline.siril_seconds("NL-Bayes execution time: 170.25 ms", "NL-Bayes") == pytest.approx(0.17025)
    assert siril_baseline.siril_seconds("no such line", "NL-Bayes") is None
