"""SAGAN self-attention against an explicit softmax(θφᵀ)g written out here."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.components.layers.attention import SelfAttention
from ganforge.components.layers.spectral_norm import spectral_norm_modules


def _w(conv):
    """Effective 1×1 kernel as a (out, in) matrix (spectrally normalised if SN is on)."""
    return conv.weight.detach()[:, :, 0, 0]


def _conv(conv, xs):
    """A 1×1 conv on channels-last xs, with its bias when it has one; identity for nn.Identity."""
    if isinstance(conv, torch.nn.Identity):
        return xs
    return xs @ _w(conv).T + (0 if conv.bias is None else conv.bias.detach())


def _explicit(attn, x, pooled):
    """The official block, step by step with plain tensor ops (channels-last, row-major positions)."""
    b, c, h, w = x.shape
    xs = x.permute(0, 2, 3, 1)  # B,H,W,C
    theta = _conv(attn.theta, xs)
    phi = _conv(attn.phi, xs)
    g = _conv(attn.g, xs)
    if pooled:
        phi = phi.reshape(b, h // 2, 2, w // 2, 2, -1).amax(dim=(2, 4))
        g = g.reshape(b, h // 2, 2, w // 2, 2, -1).amax(dim=(2, 4))
    theta = theta.reshape(b, h * w, -1)
    phi = phi.reshape(b, phi.shape[1] * phi.shape[2], -1)
    g = g.reshape(b, g.shape[1] * g.shape[2], -1)
    scores = theta @ phi.transpose(1, 2)  # no 1/sqrt(d)
    beta = torch.exp(scores - scores.amax(-1, keepdim=True))
    beta = beta / beta.sum(-1, keepdim=True)
    o = _conv(attn.out, (beta @ g).reshape(b, h, w, -1))
    return x + attn.gamma.detach() * o.permute(0, 3, 1, 2), beta


def test_gamma_zero_is_identity():
    torch.manual_seed(0)
    attn = SelfAttention(in_channels=16, in_size=8)
    assert attn.gamma.item() == 0.0
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(attn(x), x)


@pytest.mark.parametrize("kernel", ["fused", "explicit"])
@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_both_kernels_equal_the_hand_written_block(pooled, spectral_norm, kernel):
    torch.manual_seed(1)
    attn = SelfAttention(in_channels=16, in_size=8, pooled=pooled, spectral_norm=spectral_norm, kernel=kernel)
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    attn.eval()
    x = torch.randn(2, 16, 8, 8)
    expected, beta = _explicit(attn, x, pooled)
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn.attention_map(x), beta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernel", ["fused", "explicit"])
@pytest.mark.parametrize("form", ["paper", "write-up"])
def test_the_papers_and_the_write_ups_forms_equal_the_hand_written_block(form, kernel):
    """paper: unpooled, value C/8 then v: C/8 → C; write-up (sagan_faces128): value C, no v, biases."""
    torch.manual_seed(4)
    settings = {"paper": dict(pooled=False, value_divisor=8),
                "write-up": dict(pooled=False, output_conv=False, bias=True)}[form]
    attn = SelfAttention(in_channels=16, in_size=8, kernel=kernel, **settings)
    with torch.no_grad():
        attn.gamma.fill_(0.7)
        for conv in (attn.theta, attn.phi, attn.g):
            if conv.bias is not None:
                conv.bias.normal_()  # zero-initialised: make the biases count
    attn.eval()
    widths = [_w(conv).shape for conv in (attn.theta, attn.phi, attn.g)]
    if form == "paper":
        assert widths == [(2, 16), (2, 16), (2, 16)] and _w(attn.out).shape == (16, 2)
    else:
        assert widths == [(2, 16), (2, 16), (16, 16)] and isinstance(attn.out, torch.nn.Identity)
        assert all(conv.bias is not None for conv in (attn.theta, attn.phi, attn.g))
    x = torch.randn(2, 16, 8, 8)
    expected, beta = _explicit(attn, x, pooled=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn.attention_map(x), beta, rtol=1e-4, atol=1e-6)


def test_kernels_agree_on_input_gradients():
    torch.manual_seed(2)
    fused = SelfAttention(in_channels=16, in_size=8, kernel="fused")
    explicit = SelfAttention(in_channels=16, in_size=8, kernel="explicit")
    with torch.no_grad():
        fused.gamma.fill_(0.5)
    explicit.load_state_dict(fused.state_dict())
    grads = []
    for module in (fused.eval(), explicit.eval()):
        x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        (module(x) * torch.arange(x.numel()).reshape(x.shape).sin()).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_query_key_value_rows_are_contiguous(channels_last):
    """The fused GPU kernels need unit stride in the last dimension, else SDPA falls back to math."""
    attn = SelfAttention(in_channels=16, in_size=8)
    x = torch.randn(2, 16, 8, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert all(t.is_contiguous() for t in attn._query_key_value(x))


def test_channel_widths_and_no_bias():
    pooled = SelfAttention(in_channels=32, in_size=8)
    assert (_w(pooled.theta).shape, _w(pooled.phi).shape, _w(pooled.g).shape, _w(pooled.out).shape) == (
        (4, 32), (4, 32), (16, 32), (32, 16),
    )
    paper = SelfAttention(in_channels=32, in_size=8, pooled=False)
    assert _w(paper.g).shape == (32, 32) and _w(paper.out).shape == (32, 32)
    assert all(m.bias is None for m in (pooled.theta, pooled.phi, pooled.g, pooled.out))
    assert len(list(spectral_norm_modules(pooled))) == 4


def test_attention_map_rows_sum_to_one_and_shape():
    torch.manual_seed(2)
    x = torch.randn(2, 16, 8, 6)
    maps = SelfAttention(in_channels=16, in_size=8).attention_map(x)
    assert maps.shape == (2, 48, 12)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 48))
    maps = SelfAttention(in_channels=16, in_size=8, pooled=False).attention_map(x)
    assert maps.shape == (2, 48, 48)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 48))


def test_attention_map_does_not_advance_power_iteration():
    attn = SelfAttention(in_channels=16, in_size=8)
    attn.train()
    before = [sn._u.clone() for sn in spectral_norm_modules(attn)]
    attn.attention_map(torch.randn(1, 16, 8, 8))
    assert all(torch.equal(a, sn._u) for a, sn in zip(before, spectral_norm_modules(attn)))
    assert attn.training


def test_gradients_reach_gamma_and_convs():
    attn = SelfAttention(in_channels=8, in_size=4)
    attn(torch.randn(2, 8, 4, 4)).square().sum().backward()
    assert attn.gamma.grad is not None and attn.gamma.grad.abs() > 0


@settings(max_examples=25, deadline=None)
@given(perm=st.permutations(list(range(16))), seed=st.integers(0, 2**16))
def test_unpooled_is_permutation_equivariant(perm, seed):
    torch.manual_seed(seed)
    attn = SelfAttention(in_channels=8, in_size=4, pooled=False)
    with torch.no_grad():
        attn.gamma.fill_(1.3)
    attn.eval()
    x = torch.randn(2, 8, 4, 4)
    perm = torch.tensor(perm)

    def permute(t):
        return t.flatten(2)[:, :, perm].reshape(t.shape)

    torch.testing.assert_close(attn(permute(x)), permute(attn(x)), rtol=1e-4, atol=1e-5)


def test_invalid_settings():
    with pytest.raises(ValueError, match="divisible by 8"):
        SelfAttention(in_channels=12, in_size=8)
    with pytest.raises(ValueError, match="even"):
        SelfAttention(in_channels=16, in_size=7)
    SelfAttention(in_channels=16, in_size=7, pooled=False)(torch.randn(1, 16, 7, 7))
    with pytest.raises(ValueError, match="output_conv=false.*value_divisor 1"):
        SelfAttention(in_channels=16, in_size=8, output_conv=False)  # pooled: C/2 value channels


def test_meta_device():
    with torch.device("meta"):
        for pooled in (True, False):
            attn = SelfAttention(in_channels=16, in_size=8, pooled=pooled)
            out = attn(torch.empty(2, 16, 8, 8))
            assert out.shape == (2, 16, 8, 8) and out.is_meta
