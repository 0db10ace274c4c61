"""Self2Self: partial convolutions, the blind in-network ensemble, its ONNX export, and the convergence report."""

import numpy as np
import pytest
import torch

from siril_denoise.blindspot import PartialConv2d, Self2SelfNet, ensemble_masks, ring_mean
from siril_denoise.export import export_onnx
from siril_denoise.inference import OnnxDenoiser
from siril_denoise.methods import METHODS
from siril_denoise.methods.self2self import Self2Self, review
from siril_denoise.noise import NoiseModel, Normaliser
from siril_denoise.pipeline import denoise_image
from siril_denoise.synthetic import faint_mono
from siril_denoise.training import TrainConfig, train


def _net(**kw):
    torch.manual_seed(0)
    net = Self2SelfNet(1, features=4, levels=1, **{"ensemble": 4, "period": 8, **kw})
    torch.nn.init.normal_(net.out.weight, std=0.5)  # a trained-looking correction, not the zero start
    return net.eval()


def test_partial_convolution_ignores_dropped_pixels():
    torch.manual_seed(0)
    pc = PartialConv2d(1, 3)
    x = torch.randn(1, 1, 16, 16)
    keep = (torch.rand(1, 1, 16, 16) > 0.3).float()
    y, new = pc(x, keep)
    y2, _ = pc(x + 100.0 * (1 - keep), keep)  # change only the dropped pixels
    torch.testing.assert_close(y, y2)
    # With everything kept it is the plain convolution (inside: the zero padding counts as dropped).
    full, m = pc(x, torch.ones_like(keep))
    torch.testing.assert_close(full[..., 1:-1, 1:-1], (pc.conv(x) + pc.bias.view(1, -1, 1, 1))[..., 1:-1, 1:-1])
    assert m.min() == 1


def test_every_pixel_is_dropped_by_the_same_number_of_members():
    keep = ensemble_masks(10, 3, 32, seed=1)
    assert keep.shape == (10, 1, 32, 32)
    np.testing.assert_array_equal((1 - keep).sum(0), 3)
    assert 0.25 < 1 - keep[0].mean() < 0.35


def test_the_ensemble_output_never_depends_on_the_pixel_itself():
    net = _net()
    x = torch.randn(1, 1, 24, 24, requires_grad=True)
    out = net(x)
    for y, xx in ((5, 7), (12, 12), (0, 23)):
        g, = torch.autograd.grad(out[0, 0, y, xx], x, retain_graph=True)
        assert g[0, 0, y, xx] == 0 and g.abs().sum() > 0


def test_the_untouched_input_scores_as_the_local_mean_and_a_member_only_sees_kept_pixels():
    img = np.random.default_rng(0).normal(100, 5, size=(1, 48, 48)).astype("float32")
    nm = NoiseModel(np.zeros(1), np.full(1, 25.0), np.full(1, 5.0), False)
    m = Self2Self([img], Normaliser.fit(img, nm))
    z, y, keep = (torch.from_numpy(a) for a in m.sample(np.random.default_rng(1), 32, 2))
    assert 0.2 < 1 - float(keep.mean()) < 0.4
    pred = m.predict(torch.nn.Identity(), z, keep)
    drop = keep == 0
    torch.testing.assert_close(pred[drop.expand_as(pred)], ring_mean(z, keep)[drop.expand_as(pred)])
    net = _net()
    a = m.predict(net, z, keep)
    b = m.predict(net, z + 50.0 * (1 - keep), keep)
    torch.testing.assert_close(a, b)


def test_onnx_export_computes_the_same_ensemble(tmp_path):
    net = _net()
    rep = export_onnx(net, tmp_path / "s2s.onnx", channels=1, metadata={"method": "self2self"})
    assert rep.max_rel_error is not None and rep.max_rel_error < 1e-4
    x = np.random.default_rng(2).standard_normal((1, 1, 40, 56)).astype("float32")  # not a multiple of the period
    got = OnnxDenoiser(tmp_path / "s2s.onnx", use_gpu=False)(x)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_a_run_that_diverges_or_oscillates_says_so():
    img = np.random.default_rng(0).normal(100, 5, size=(1, 48, 48)).astype("float32")
    nm = NoiseModel(np.zeros(1), np.full(1, 25.0), np.full(1, 5.0), False)
    m = Self2Self([img], Normaliser.fit(img, nm))
    torch.manual_seed(0)
    net = Self2SelfNet(1, features=4, levels=1, ensemble=4, period=8)
    cfg = TrainConfig(max_steps=30, batch=2, crop=32, lr=1e4, warmup_steps=1, eval_interval=5,
                      max_lr_drops=1, threads=1)
    res = train(net, m, cfg)
    assert res.stopped == "diverged" and "diverged" in res.flags
    assert any("diverged" in n for n in res.notes)
    # The seed's failure: a held-out loss going up and down instead of settling.
    hist = [{"val_loss": v} for v in (3.0, 2.5, 2.0, 1.8, 2.6, 1.7, 3.2)]
    (flag, note), = review(hist, 3.0, 1.7)
    assert flag == "not_converged" and "did not converge" in note and "zsn2n" in note
    # A settled run raises nothing; one still falling asks for more steps.
    assert review([{"val_loss": v} for v in (3.0, 2.5, 2.0, 1.8, 1.72, 1.71, 1.70)], 3.0, 1.70) == []
    (flag, note), = review([{"val_loss": v} for v in (3.0, 2.9, 2.8, 2.6, 2.3, 2.0, 1.5)], 3.0, 1.5)
    assert "more training steps" in note


def test_self2self_is_registered_and_denoises_keeping_flux():
    spec = METHODS["self2self"]
    assert spec.single_image and spec.network == "s2s" and "slow" in spec.label
    s = faint_mono((64, 64), 5)
    res = denoise_image(s.frames[0], method="self2self", max_steps=30, use_gpu=False,
                        recipe={"net_options": {"features": 4, "levels": 1, "ensemble": 4, "period": 8},
                                "batch": 4, "crop": 32})
    rep = res.report
    assert res.model_metadata["method"] == "self2self"
    assert rep.noise_reduction_overall >= 1.5
    assert abs(rep.background_shift_sigma[0]) < 0.05
    assert abs(rep.star_flux_ratio - 1) < 0.05
