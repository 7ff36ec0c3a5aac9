"""BigGAN's orthogonal regularisation: its gradient is BigGAN-PyTorch's ``utils.ortho`` update.

The reference (utils.py:646-655) adds strength · 2·((w wᵀ) ⊙ (1 − I))·w to each gradient, with
w = param.view(rows, -1), skipping parameters with fewer than two axes and the blacklisted shared
embedding. The tests write that update out by hand and compare it with autograd's gradient of
our penalty.
"""

from __future__ import annotations

import pytest
import torch

from ganforge.components.losses.orthogonal import Orthogonal
from ganforge.contracts import check_contract
from ganforge.records import TaggedParameter
from ganforge.registry import default_registry

STRENGTH = 1e-2


def biggan_update(param: torch.Tensor, strength: float) -> torch.Tensor:
    """BigGAN-PyTorch's utils.ortho gradient for one parameter, written out."""
    w = param.detach().reshape(param.shape[0], -1)
    off = (w @ w.T) * (1.0 - torch.eye(w.shape[0], dtype=w.dtype))
    return (strength * 2 * off @ w).reshape(param.shape)


def tagged(name: str, value: torch.Tensor, *tags: str) -> TaggedParameter:
    return TaggedParameter(name, torch.nn.Parameter(value), frozenset(tags))


@pytest.mark.parametrize("shape", [(3, 12), (12, 3), (5, 3, 3, 3), (4, 4), (1, 6)],
                         ids=["wide", "tall", "conv", "square", "one-row"])
def test_gradient_is_biggans_update(shape):
    torch.manual_seed(0)
    p = tagged("w", torch.randn(*shape, dtype=torch.float64))
    penalty = Orthogonal(strength=STRENGTH)(parameters=(p,))
    penalty.backward()
    torch.testing.assert_close(p.parameter.grad, biggan_update(p.parameter, STRENGTH), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 12), (12, 3), (2, 3, 3, 3)])
def test_value_is_half_strength_times_off_diagonal_energy(shape):
    torch.manual_seed(1)
    w = torch.randn(*shape, dtype=torch.float64)
    m = w.reshape(shape[0], -1)
    gram = m @ m.T
    expected = STRENGTH / 2 * sum(gram[i, j] ** 2 for i in range(shape[0]) for j in range(shape[0]) if i != j)
    value = Orthogonal(strength=STRENGTH)(parameters=(tagged("w", w),))
    torch.testing.assert_close(value, torch.as_tensor(expected, dtype=torch.float64), rtol=1e-10, atol=0)


def test_rows_already_orthogonal_cost_nothing():
    q, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))  # orthonormal columns
    wide = tagged("wide", 3.0 * q.T)  # 4 orthogonal rows of norm 3: only row norms, which are free
    assert Orthogonal()(parameters=(wide,)).item() == pytest.approx(0.0, abs=1e-12)


def test_several_parameters_each_get_their_own_update():
    torch.manual_seed(2)
    params = [tagged("conv", torch.randn(4, 2, 3, 3, dtype=torch.float64)),
              tagged("linear", torch.randn(7, 3, dtype=torch.float64))]
    Orthogonal(strength=STRENGTH)(parameters=params).backward()
    for p in params:
        torch.testing.assert_close(p.parameter.grad, biggan_update(p.parameter, STRENGTH), rtol=1e-10, atol=1e-12)


def test_tagged_and_one_axis_parameters_are_skipped():
    torch.manual_seed(3)
    weight = tagged("block.conv.weight", torch.randn(3, 5))
    shared = tagged("context.0.embedding.weight", torch.randn(10, 4), "no_orthogonal")
    bias = tagged("block.conv.bias", torch.randn(3))
    gamma = tagged("attention.gamma", torch.tensor(0.5))
    penalty = Orthogonal(strength=STRENGTH)(parameters=(weight, shared, bias, gamma))
    penalty.backward()
    assert shared.parameter.grad is None and bias.parameter.grad is None and gamma.parameter.grad is None
    torch.testing.assert_close(weight.parameter.grad, biggan_update(weight.parameter, STRENGTH))
    # the penalty is the weight's alone
    alone = Orthogonal(strength=STRENGTH)(parameters=(tagged("w", weight.parameter.detach().clone()),))
    torch.testing.assert_close(penalty.detach(), alone.detach())


def test_nothing_to_regularise_is_zero():
    only_bias = tagged("b", torch.randn(3))
    assert Orthogonal()(parameters=(only_bias,)).item() == 0.0
    assert Orthogonal()(parameters=()).item() == 0.0


def test_registered_as_a_generator_regularizer():
    component = default_registry().get("regularizer", "orthogonal")
    assert component.obj is Orthogonal
    check_contract("regularizer", Orthogonal)
    assert Orthogonal.network == "generator"
    assert Orthogonal().strength == 1e-4
