"""Noise2Void: the blind spot (hidden pixels never reach the input), the N2V2 network, and a short run."""

import numpy as np
import pytest
import torch

from siril_denoise.blindspot import N2V2UNet, ring_mean
from siril_denoise.methods import METHODS
from siril_denoise.methods.n2v import RADIUS, Noise2Void, blind_spot_mask, replace_masked
from siril_denoise.noise import NoiseModel, Normaliser
from siril_denoise.pipeline import denoise_image
from siril_denoise.synthetic import faint_mono


def _method(channels=1, size=64, seed=0):
    img = np.random.default_rng(seed).normal(100, 5, size=(channels, size, size)).astype("float32")
    nm = NoiseModel(np.zeros(channels), np.full(channels, 25.0), np.full(channels, 5.0), False)
    return Noise2Void([img], Normaliser.fit(img, nm))


def test_hidden_pixels_are_spread_and_never_in_each_others_window():
    m = blind_spot_mask(np.random.default_rng(0), 16, 60, 60)
    assert m.shape == (16, 1, 60, 60) and m.sum() == 16 * 100  # one per 6x6 cell: 2.8 %
    for b in range(16):
        ys, xs = np.nonzero(m[b, 0])
        d = np.maximum(np.abs(ys[:, None] - ys[None]), np.abs(xs[:, None] - xs[None]))
        np.fill_diagonal(d, 99)
        assert d.min() > RADIUS


def test_replacement_is_the_median_of_the_neighbours_without_the_centre():
    z = np.arange(49, dtype=np.float32).reshape(1, 1, 7, 7) ** 2
    mask = np.zeros_like(z)
    mask[0, 0, 3, 3] = 1
    mask[0, 0, 0, 6] = 1  # a corner: only the 8 neighbours inside the crop count
    out = replace_masked(z, mask)
    win = z[0, 0, 1:6, 1:6].ravel()
    assert out[0, 0, 3, 3] == np.median(np.delete(win, 12))
    assert out[0, 0, 0, 6] == np.median([z[0, 0, 0, 4], z[0, 0, 0, 5], *z[0, 0, 1:3, 4:7].ravel()])
    mask[...] = 0
    np.testing.assert_array_equal(replace_masked(z, mask), z)


@pytest.mark.parametrize("channels", [1, 4])
def test_a_hidden_pixel_never_reaches_the_network(channels):
    """A network that copies the centre (the identity) predicts the same at a hidden
    pixel whatever that pixel's value: the value is not in the input. With 4 packed
    Bayer planes, a hidden pixel hides all four."""
    m = _method(channels)
    z, y, mask = m.sample(np.random.default_rng(3), 48, 4)
    assert mask.shape == (4, 1, 48, 48)
    y2 = y + 1000.0 * mask  # change only the hidden pixels' own values, in every plane
    z2 = replace_masked(m.domain.forward_np(y2), mask)
    np.testing.assert_array_equal(z2, z)
    copy = torch.nn.Identity()
    assert float(m.loss(copy, [torch.from_numpy(a) for a in (z, y, mask)])) > 0.5  # cannot cheat
    # The loss reads only the hidden pixels.
    y3 = y + 1000.0 * (1 - mask)
    l1 = float(m.loss(copy, [torch.from_numpy(a) for a in (z, y, mask)]))
    l3 = float(m.loss(copy, [torch.from_numpy(a) for a in (z, y3, mask)]))
    assert l1 == pytest.approx(l3)


def test_n2v2_network_starts_as_a_blind_local_mean_without_the_top_skip():
    torch.manual_seed(0)
    net = N2V2UNet(1, features=8, levels=2)
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    out = net(x)
    torch.testing.assert_close(out, ring_mean(x))
    out[0, 0, 16, 16].backward()
    assert x.grad[0, 0, 16, 16] == 0 and x.grad[0, 0, 15, 16] > 0
    # The full-resolution decoder block reads only the upsampled features (no skip from the top encoder).
    assert net.dec[-1][0].in_channels == 16


def test_n2v_is_registered_and_denoises_keeping_flux():
    spec = METHODS["n2v"]
    assert spec.single_image and spec.network == "n2v2"
    s = faint_mono((96, 96), 5)
    res = denoise_image(s.frames[0], method="n2v", max_steps=40, use_gpu=False,
                        recipe={"net_options": {"features": 8}, "batch": 4, "crop": 48})
    rep = res.report
    assert res.model_metadata["method"] == "n2v" and res.model_metadata["network"] == "n2v2"
    assert rep.noise_reduction_overall >= 1.5
    assert abs(rep.background_shift_sigma[0]) < 0.05
    assert abs(rep.star_flux_ratio - 1) < 0.05
