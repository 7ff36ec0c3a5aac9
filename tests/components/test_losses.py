"""Adversarial losses and gradient regularisers: hand-computed values, gradient directions."""

import math

import pytest
import torch

from ganforge.records import DiscriminatorOutput

from ganforge.components.losses.adversarial import Hinge, LeastSquares, NonSaturating, Wasserstein
from ganforge.components.losses.regularizers import R1, GradientPenalty
from ganforge.registry import default_registry

REAL = [2.0, 0.5, -1.0]
FAKE = [-2.0, 0.5, 1.0]


def _o(values) -> DiscriminatorOutput:
    """D's output record for these logits (a tensor is used as it is, keeping its gradient)."""
    return DiscriminatorOutput.of(values if isinstance(values, torch.Tensor) else _t(values))


def _t(values):
    return torch.tensor(values).reshape(-1, 1)


def _mean(values):
    return sum(values) / len(values)


def _softplus(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    ("loss", "d_expected", "g_expected"),
    [
        (Hinge(), _mean([0.0, 0.5, 2.0]) + _mean([0.0, 1.5, 2.0]), -_mean(FAKE)),
        (
            NonSaturating(),
            _mean([-math.log(1 / (1 + math.exp(-r))) for r in REAL]) + _mean([-math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE]),
            _mean([-math.log(1 / (1 + math.exp(-f))) for f in FAKE]),
        ),
        (Wasserstein(), _mean(FAKE) - _mean(REAL), -_mean(FAKE)),
        (
            LeastSquares(),
            0.5 * _mean([(r - 1) ** 2 for r in REAL]) + 0.5 * _mean([f**2 for f in FAKE]),
            0.5 * _mean([(f - 1) ** 2 for f in FAKE]),
        ),
        (
            LeastSquares(fake_target=-1.0, real_target=1.0, generator_target=0.0),
            0.5 * _mean([(r - 1) ** 2 for r in REAL]) + 0.5 * _mean([(f + 1) ** 2 for f in FAKE]),
            0.5 * _mean([f**2 for f in FAKE]),
        ),
    ],
    ids=["hinge", "non_saturating", "wasserstein", "least_squares", "least_squares_-1_1_0"],
)
def test_known_values(loss, d_expected, g_expected):
    d = loss.discriminator_loss(real=_o(REAL), fake=_o(FAKE))
    g = loss.generator_loss(fake=_o(FAKE))
    assert d.ndim == 0 and g.ndim == 0
    assert d.item() == pytest.approx(d_expected, rel=1e-6)
    assert g.item() == pytest.approx(g_expected, rel=1e-6)


def test_non_saturating_is_stable_for_large_logits():
    loss = NonSaturating()
    big = _t([100.0, -100.0])
    assert torch.isfinite(loss.discriminator_loss(real=_o(big), fake=_o(big)))
    assert loss.generator_loss(fake=_o([-100.0])).item() == pytest.approx(100.0)
    assert loss.discriminator_loss(real=_o([3.0]), fake=_o([-3.0])).item() == pytest.approx(2 * _softplus(-3.0))


LOSSES = [Hinge(), NonSaturating(), Wasserstein(), LeastSquares()]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: type(l).__name__)
def test_gradient_directions(loss):
    # logits where every loss is active (hinge margins not met, LSGAN targets not reached)
    real = _t([0.2, -0.3, 0.6]).requires_grad_(True)
    fake = _t([0.4, 0.1, 0.7]).requires_grad_(True)
    loss.discriminator_loss(real=_o(real), fake=_o(fake)).backward()
    assert (real.grad < 0).all(), "descending D's loss must raise real logits"
    assert (fake.grad > 0).all(), "descending D's loss must lower fake logits"
    fake_g = _t([0.4, 0.1, 0.7]).requires_grad_(True)
    loss.generator_loss(fake=_o(fake_g)).backward()
    assert (fake_g.grad < 0).all(), "descending G's loss must raise fake logits"


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: type(l).__name__)
def test_keyword_only(loss):
    with pytest.raises(TypeError):
        loss.discriminator_loss(_t(REAL), _t(FAKE))
    with pytest.raises(TypeError):
        loss.generator_loss(_t(FAKE))


def test_registered_and_build_from_defaults():
    registry = default_registry()
    for name, cls in [("hinge", Hinge), ("non_saturating", NonSaturating), ("wasserstein", Wasserstein), ("least_squares", LeastSquares)]:
        assert isinstance(registry.get("loss", name).build({}), cls)
    assert isinstance(registry.get("regularizer", "r1").build({}), R1)
    assert isinstance(registry.get("regularizer", "gradient_penalty").build({}), GradientPenalty)
    with pytest.raises(TypeError):
        LeastSquares(0.0, 1.0, 1.0)


# -- regularisers ----------------------------------------------------------------------------


def _linear_discriminator(w):
    return lambda x: x.flatten(1) @ w.reshape(-1, 1)


def test_r1_on_linear_discriminator():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 3, requires_grad=True)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    penalty = R1(gamma=10.0)(discriminator=_linear_discriminator(w), real=real, fake=fake)
    expected = 10.0 / 2 * (w.detach() ** 2).sum()
    torch.testing.assert_close(penalty.detach(), expected)
    penalty.backward()  # differentiable w.r.t. D's parameters (create_graph=True)
    torch.testing.assert_close(w.grad, 10.0 * w.detach())
    assert R1(gamma=1.0)(discriminator=_linear_discriminator(w), real=real, fake=fake).item() == pytest.approx(expected.item() / 10)


def test_r1_ignores_fake_and_does_not_touch_inputs():
    w = torch.randn(6, requires_grad=True)
    d = lambda x: (x.flatten(1) ** 2) @ w.reshape(-1, 1)  # noqa: E731  (input-dependent gradient)
    real = torch.randn(3, 6)
    a = R1()(discriminator=d, real=real, fake=torch.randn(3, 6))
    b = R1()(discriminator=d, real=real, fake=torch.randn(3, 6))
    torch.testing.assert_close(a, b)
    expected = 5.0 * ((2 * real * w.detach()) ** 2).sum(1).mean()
    torch.testing.assert_close(a.detach(), expected)
    assert not real.requires_grad


def test_gradient_penalty_on_linear_discriminator():
    torch.manual_seed(1)
    w = torch.randn(12, requires_grad=True)
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    penalty = GradientPenalty()(discriminator=_linear_discriminator(w), real=real, fake=fake)
    norm = w.detach().norm()
    torch.testing.assert_close(penalty.detach(), 10.0 * (norm - 1) ** 2)
    penalty.backward()
    torch.testing.assert_close(w.grad, 10.0 * 2 * (norm - 1) * w.detach() / norm)
    target2 = GradientPenalty(weight=1.0, target=2.0)(discriminator=_linear_discriminator(w), real=real, fake=fake)
    torch.testing.assert_close(target2.detach(), (norm - 2) ** 2)


def test_gradient_penalty_evaluates_at_interpolates():
    torch.manual_seed(2)
    seen = []

    def d(x):
        seen.append(x.detach().clone())
        return x.flatten(1).sum(1, keepdim=True)

    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    GradientPenalty()(discriminator=d, real=real, fake=fake)
    (x,) = seen
    alpha = ((x - fake) * (real - fake)).sum(1) / ((real - fake) ** 2).sum(1)
    torch.testing.assert_close(x, alpha[:, None] * real + (1 - alpha[:, None]) * fake, rtol=1e-4, atol=1e-5)
    assert ((alpha >= 0) & (alpha <= 1)).all() and alpha.std() > 0


def test_regularizers_are_keyword_only():
    d = _linear_discriminator(torch.randn(4))
    x = torch.randn(2, 4)
    for reg in (R1(), GradientPenalty()):
        with pytest.raises(TypeError):
            reg(d, x, x)
