"""Spectral normalisation: checked against torch.linalg and a power iteration written here."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.components.layers.attention import SelfAttention
from ganforge.components.layers.spectral_norm import (
    SNConv2d,
    SNEmbedding,
    SNLinear,
    frozen_spectral_norm,
    refresh_spectral_norm,
    sigma_estimates,
    spectral_norm_modules,
)


def _uv(layer):
    (sn,) = list(spectral_norm_modules(layer))
    return sn._u, sn._v


def _normalize(t, eps=1e-12):
    return t / torch.clamp(torch.sqrt((t * t).sum()), min=eps)


def _power_step(w_mat, v):
    """One step of the power method, written out: u ← Wv/‖Wv‖, v ← Wᵀu/‖Wᵀu‖."""
    u = _normalize(w_mat @ v)
    v = _normalize(w_mat.T @ u)
    return u, v


def test_sigma_estimate_converges_to_spectral_norm():
    torch.manual_seed(0)
    layer = SNLinear(in_features=12, features=7, sn_iterations=5)
    original = layer.linear.parametrizations.weight.original
    layer.train()
    x = torch.randn(2, 12)
    for _ in range(40):
        layer(x)
    exact = torch.linalg.matrix_norm(original.detach(), ord=2)
    (estimate,) = sigma_estimates(layer)
    torch.testing.assert_close(estimate, exact, rtol=1e-4, atol=0)
    layer.eval()
    torch.testing.assert_close(torch.linalg.matrix_norm(layer.linear.weight.detach(), ord=2), torch.tensor(1.0), rtol=1e-4, atol=0)


@pytest.mark.parametrize("iterations", [1, 3])
def test_conv_matches_hand_written_power_iteration(iterations):
    torch.manual_seed(1)
    layer = SNConv2d(in_channels=4, channels=6, kernel_size=3, sn_iterations=iterations)
    conv = layer.conv
    w = conv.parametrizations.weight.original.detach().clone()
    u0, v0 = (t.clone() for t in _uv(layer))
    w_mat = w.flatten(1)
    v = v0
    for _ in range(iterations):
        u, v = _power_step(w_mat, v)
    sigma = u @ w_mat @ v
    x = torch.randn(2, 4, 8, 8)
    layer.train()
    y = layer(x)
    expected = F.conv2d(x, w / sigma, conv.bias.detach(), padding=1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    u_buf, v_buf = _uv(layer)
    torch.testing.assert_close(u_buf, u)
    torch.testing.assert_close(v_buf, v)
    assert not torch.equal(u_buf, u0) or not torch.equal(v_buf, v0)


def test_eval_does_not_move_vectors_train_does():
    torch.manual_seed(2)
    layer = SNConv2d(in_channels=3, channels=5)
    with torch.no_grad():  # make the stored vectors stale so a power step visibly moves them
        layer.conv.parametrizations.weight.original.mul_(torch.randn_like(layer.conv.parametrizations.weight.original))
    x = torch.randn(2, 3, 8, 8)
    before = [t.clone() for t in _uv(layer)]
    layer.eval()
    layer(x)
    layer(x)
    assert all(torch.equal(a, b) for a, b in zip(before, _uv(layer)))
    layer.train()
    layer(x)
    assert not torch.allclose(before[0], _uv(layer)[0])


def test_frozen_spectral_norm_stops_updates_keeps_training_mode():
    torch.manual_seed(3)
    net = nn.Sequential(
        SNConv2d(in_channels=3, channels=16),
        nn.BatchNorm2d(16),
        SelfAttention(in_channels=16, in_size=8),
    )
    with torch.no_grad():
        for sn in spectral_norm_modules(net):
            sn._u.copy_(_normalize(torch.randn_like(sn._u)))
    net.train()
    x = torch.randn(2, 3, 8, 8)
    before = [t.clone() for sn in spectral_norm_modules(net) for t in (sn._u, sn._v)]
    running_mean = net[1].running_mean.clone()
    with frozen_spectral_norm(net):
        net(x)
        assert net.training and net[1].training
    after = [t for sn in spectral_norm_modules(net) for t in (sn._u, sn._v)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not torch.equal(running_mean, net[1].running_mean)  # BN still in training mode
    assert all(sn.training for sn in spectral_norm_modules(net))
    net(x)  # updates again after the block
    after = [t for sn in spectral_norm_modules(net) for t in (sn._u, sn._v)]
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


def test_frozen_spectral_norm_restores_modes_after_error():
    layer = SNLinear(in_features=4, features=4)
    layer.train()
    with pytest.raises(RuntimeError):
        with frozen_spectral_norm(layer):
            raise RuntimeError("boom")
    assert all(sn.training for sn in spectral_norm_modules(layer))
    layer.eval()
    with frozen_spectral_norm(layer):
        pass
    assert not any(sn.training for sn in spectral_norm_modules(layer))


def test_state_dict_round_trip():
    torch.manual_seed(4)
    a = SNConv2d(in_channels=3, channels=8)
    a.train()
    x = torch.randn(2, 3, 8, 8)
    a(x)
    state = a.state_dict()
    assert any(k.endswith("_u") for k in state) and any(k.endswith("_v") for k in state)
    b = SNConv2d(in_channels=3, channels=8)
    b.load_state_dict(state)
    for ta, tb in zip(_uv(a), _uv(b)):
        assert torch.equal(ta, tb)
    a.eval()
    b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_two_forwards_then_backward_and_deepcopy():
    """The GAN pattern D(real) - D(fake) in one graph works; copies (EMA) are independent."""
    layer = SNLinear(in_features=5, features=1)
    layer.train()
    loss = layer(torch.randn(3, 5)).mean() - layer(torch.randn(3, 5)).mean()
    loss.backward()
    assert layer.linear.parametrizations.weight.original.grad is not None
    twin = copy.deepcopy(layer)
    u_before = _uv(layer)[0].clone()
    with torch.no_grad():
        twin.linear.parametrizations.weight.original.mul_(-2.0)
    twin(torch.randn(3, 5))
    assert torch.equal(_uv(layer)[0], u_before)
    assert _uv(twin)[0].data_ptr() != _uv(layer)[0].data_ptr()


def test_refresh_gives_exact_sigma():
    torch.manual_seed(5)
    layer = SNConv2d(in_channels=4, channels=8)
    original = layer.conv.parametrizations.weight.original
    with torch.no_grad():
        original.normal_()
    refresh_spectral_norm(layer)
    layer.eval()
    w_eff = layer.conv.weight.detach().flatten(1)
    torch.testing.assert_close(torch.linalg.matrix_norm(w_eff, ord=2), torch.tensor(1.0), rtol=1e-5, atol=0)


def test_spectral_norm_off_is_plain():
    layer = SNConv2d(in_channels=3, channels=4, spectral_norm=False)
    assert list(spectral_norm_modules(layer)) == []
    assert isinstance(layer.conv.weight, nn.Parameter)


def test_embedding_and_linear_shapes_and_errors():
    emb = SNEmbedding(num_classes=5, features=7)
    assert emb(torch.tensor([0, 4])).shape == (2, 7)
    with pytest.raises(ValueError, match="num_classes"):
        SNEmbedding(num_classes=0)
    with pytest.raises(ValueError, match="odd kernel"):
        SNConv2d(in_channels=3, kernel_size=4)
    assert SNConv2d(in_channels=3, channels=4, kernel_size=4, stride=2, padding=1)(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)


def test_meta_device():
    with torch.device("meta"):
        conv = SNConv2d(in_channels=3, channels=16, stride=2)
        lin = SNLinear(in_features=10, features=6)
        emb = SNEmbedding(num_classes=4, features=6)
        assert conv(torch.empty(2, 3, 8, 8)).shape == (2, 16, 4, 4)
        assert lin(torch.empty(2, 10)).shape == (2, 6)
        out = emb(torch.zeros(2, dtype=torch.long))
        assert out.shape == (2, 6) and out.is_meta


def test_power_iteration_runs_outside_autocast(monkeypatch):
    """Under bf16 autocast torch would run the matvecs of σ in bf16 (error ~1e-3 on a GPU)."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    seen = []
    original = _SpectralNorm._power_method

    def spy(self, weight_mat, n):
        seen.append((torch.is_autocast_enabled("cpu"), weight_mat.dtype))
        return original(self, weight_mat, n)

    monkeypatch.setattr(_SpectralNorm, "_power_method", spy)
    layer = SNConv2d(in_channels=4, channels=8)
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = layer.conv.weight
        out = layer(torch.randn(1, 4, 5, 5))
    assert seen and all(state == (False, torch.float32) for state in seen)
    assert weight.dtype == torch.float32 and out.dtype == torch.bfloat16  # the conv itself still autocasts
