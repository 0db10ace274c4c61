"""The shared training loop and the self-supervised methods."""

import doctest

import numpy as np
import pytest
import torch

from siril_denoise import library, synthetic, training
from siril_denoise.errors import Cancelled
from siril_denoise.methods import nb2nb, zsn2n
from siril_denoise.methods.nb2nb import Neighbor2Neighbor
from siril_denoise.methods.zsn2n import ZeroShotN2N
from siril_denoise.networks import NETWORKS, build_network
from siril_denoise.noise import Normaliser, estimate_noise_model
from siril_denoise.training import TrainConfig, get_lr, keeps_final, train


def _image(seed=0, size=64):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = 300 + 200 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 3) ** 2) / 60.0)
    x = (rng.poisson(truth) + rng.normal(0, 3, truth.shape)).astype(np.float32)[None]
    return x, Normaliser.fit(x, estimate_noise_model(x))


# Every module with docstring examples (nb2nb has none); a module listed here must have some.
@pytest.mark.parametrize("mod", [zsn2n, synthetic, library], ids=lambda m: m.__name__)
def test_docstring_examples_run(mod):
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("channels", [1, 4])
def test_networks_keep_shape_and_start_near_identity(name, channels):
    net = build_network(name, channels)
    m = getattr(net, "multiple", 1)
    x = torch.randn(2, channels, 8 * m if m > 1 else 20, 8 * m if m > 1 else 24)
    y = net(x)
    assert y.shape == x.shape
    if type(net).__module__ == build_network.__module__:  # blind-spot nets start as a local mean (test_n2v.py)
        assert torch.allclose(y, x)  # residual nets with a zero last layer start as the identity


def test_nb2nb_numpy_and_torch_subsamplers_agree():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 3, 8, 10)).astype(np.float32)
    i1, i2 = nb2nb.neighbour_masks(rng, 2, 4, 5)
    assert np.all(i1 != i2) and np.all((i1 + i2) % 3 != 0)  # neighbours share a row or column
    np.testing.assert_array_equal(nb2nb.subsample(y, i1), nb2nb.subsample(torch.from_numpy(y), torch.from_numpy(i1)).numpy())


class _Constant(torch.nn.Module):
    def __init__(self, z: float) -> None:
        super().__init__()
        self.z = z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.z)


def test_nb2nb_validation_prefers_the_clean_sky_to_the_untouched_input():
    rng = np.random.default_rng(1)
    truth = np.full((1, 96, 96), 300.0, dtype=np.float32)
    x = (rng.poisson(truth) + rng.normal(0, 3, truth.shape)).astype(np.float32)
    norm = Normaliser.fit(x, estimate_noise_model(x))
    m = Neighbor2Neighbor([x], norm)
    batches = [tuple(torch.from_numpy(np.asarray(a)) for a in b) for b in m.validation(rng, 64, 4, 4)]
    clean = _Constant(float(norm.forward(truth).mean()))
    identity = torch.nn.Identity()

    def mean(fn, net):
        with torch.no_grad():
            return float(np.mean([float(fn(net, b)) for b in batches]))

    assert mean(m.val_loss, clean) < 0.7 * mean(m.val_loss, identity)  # ~1 against ~2 (σ² units)
    # the training loss itself would pick the input: its regulariser is 0 there, ~1 for the clean sky
    assert mean(m.loss, clean) > mean(m.loss, identity)


@pytest.mark.parametrize("method", [ZeroShotN2N, Neighbor2Neighbor])
def test_training_lowers_the_validation_loss(method):
    x, norm = _image()
    net = build_network("zsn2n", 1)
    r = train(net, method([x], norm), TrainConfig(max_steps=40, crop=32, batch=4, eval_interval=10, warmup_steps=5,
                                                 time_budget=None))
    assert r.best_val < r.history[0]["val_loss"]
    assert r.steps == 40 and r.stopped in ("max_steps", "early_stopping")


def test_training_is_repeatable_with_a_seed():
    x, norm = _image()
    states = []
    for _ in range(2):
        net = build_network("zsn2n", 1)
        torch.manual_seed(123)  # same initial weights
        net = build_network("zsn2n", 1)
        train(net, ZeroShotN2N([x], norm), TrainConfig(max_steps=10, crop=32, batch=2, eval_interval=5, time_budget=None, seed=7))
        states.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.equal(states[0], states[1])


def _weights(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()]).clone()


def _train_tiny(**cfg):
    """A seeded ZS-N2N net trained on the test image: (weights before, weights after, result)."""
    x, norm = _image()
    torch.manual_seed(3)
    net = build_network("zsn2n", 1)
    before = _weights(net)
    r = train(net, ZeroShotN2N([x], norm), TrainConfig(crop=32, batch=2, warmup_steps=1, time_budget=None, seed=5,
                                                      **cfg))
    return before, _weights(net), r


def test_grad_clip_zero_means_no_clipping():
    """grad_clip=0 is documented as "no clipping": the weights must still move (clipping at 0 would freeze them)."""
    moved = {}
    for clip in (0.0, 1e9):
        before, after, _ = _train_tiny(max_steps=6, eval_interval=3, grad_clip=clip)
        moved[clip] = after - before
    assert float(moved[0.0].abs().max()) > 0
    assert torch.allclose(moved[0.0], moved[1e9])


class _Exploding(ZeroShotN2N):
    """A method whose loss becomes NaN after some steps (a diverging run)."""

    def __init__(self, *a, after=8, **k):
        super().__init__(*a, **k)
        self.calls, self.after = 0, after

    def loss(self, net, batch):
        self.calls += 1
        out = super().loss(net, batch)
        return out * float("nan") if net.training and self.calls > self.after else out


def test_divergence_guard_restores_the_best_weights_and_stops():
    x, norm = _image()
    net = build_network("zsn2n", 1)
    r = train(net, _Exploding([x], norm), TrainConfig(max_steps=100, crop=32, batch=2, eval_interval=4, time_budget=None,
                                                      max_lr_drops=2))
    assert r.stopped == "diverged" and r.lr_drops == 3
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_cancel_raises_and_time_budget_stops():
    x, norm = _image()
    calls = []
    with pytest.raises(Cancelled):
        train(build_network("zsn2n", 1), ZeroShotN2N([x], norm), TrainConfig(max_steps=100, crop=32, batch=2),
              should_cancel=lambda: calls.append(1) or len(calls) > 3)
    r = train(build_network("zsn2n", 1), ZeroShotN2N([x], norm),
              TrainConfig(max_steps=100000, crop=32, batch=2, time_budget=1.0, eval_interval=1000))
    # stopped by the cap, after training, at the first step that began past the 1 s (not before)
    assert r.stopped == "time_budget" and 1 < r.steps < 100000 and r.seconds >= 1.0


def test_learning_rate_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert get_lr(0.0, cfg, 0) == pytest.approx(1e-4)
    assert get_lr(0.1, cfg, 10) == pytest.approx(1e-3, rel=0.05)
    assert get_lr(1.0, cfg, 500) == pytest.approx(1e-4)


def test_ema_returns_the_average_of_the_weights_not_the_last_ones():
    """With ``ema`` the run returns (and scores) the moving average: it differs from the plain run's last
    weights and lags behind them, closer to the start."""
    final = {}
    for ema in (0.0, 0.9):
        start, final[ema], r = _train_tiny(max_steps=30, eval_interval=30, patience=100, ema=ema)
        assert r.best_step == 30  # the last evaluation wins on this easy image: compare the final weights
    assert not torch.allclose(final[0.0], final[0.9])
    assert float((final[0.9] - start).norm()) < float((final[0.0] - start).norm())


def test_keeps_final_unless_the_final_weights_give_back_much_of_the_gain():
    assert keeps_final(last=1.8, best=1.7, untouched=2.9)  # a wandering held-out loss: keep the last weights
    assert not keeps_final(last=2.5, best=1.7, untouched=2.9)  # two thirds of the gain lost: keep the best
    assert not keeps_final(last=3.1, best=2.9, untouched=2.9)  # no gain at all: keep the (starting) best


class _ScoredByEvaluation(ZeroShotN2N):
    """Held-out losses scripted per evaluation: ``schedule[k]`` at evaluation k, on every batch."""

    def __init__(self, *a, schedule, **k):
        super().__init__(*a, **k)
        self.schedule, self.batch, self.evaluation = schedule, 0, 0

    def val_loss(self, net, batch):
        k = min(self.evaluation, len(self.schedule) - 1)
        self.batch = (self.batch + 1) % 8  # val_batches
        self.evaluation += self.batch == 0
        return torch.tensor(1.0 + self.schedule[k])


@pytest.mark.parametrize("last, kept", [(-0.5, 12), (-0.2, 6)])
def test_a_finished_run_keeps_its_final_weights_unless_they_are_clearly_worse(last, kept):
    """Evaluations of the identity, the start and steps 3, 6, 9, 12: the best is step 6 (gain 0.6 over the
    input). A final loss 0.1 above it keeps the final weights; one 0.4 above it keeps step 6's."""
    x, norm = _image()
    schedule = [0.0, 0.0, -0.3, -0.6, -0.5, last]
    method = _ScoredByEvaluation([x], norm, schedule=schedule)
    r = train(build_network("zsn2n", 1), method,
              TrainConfig(max_steps=12, crop=32, batch=2, eval_interval=3, val_batches=8, patience=100, seed=1))
    assert r.stopped == "max_steps" and r.steps == 12
    assert r.best_step == kept


class _RecordsPrecision(ZeroShotN2N):
    """Notes, at each training step, whether the loss ran under bfloat16 autocast."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.bf16 = []

    def loss(self, net, batch):
        if net.training:
            self.bf16.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return super().loss(net, batch)


@pytest.mark.parametrize("hardware", [True, False])
def test_bf16_covers_the_first_fraction_of_the_steps_only_where_the_cpu_has_it(hardware, monkeypatch):
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: hardware)
    x, norm = _image()
    method = _RecordsPrecision([x], norm)
    net = build_network("zsn2n", 1)
    train(net, method, TrainConfig(max_steps=10, crop=32, batch=2, eval_interval=5, bf16=0.6, device="cpu"))
    assert method.bf16 == ([True] * 6 + [False] * 4 if hardware else [False] * 10)
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in net.parameters())  # exported as usual
