"""Path-length regularisation on a linear generator g(w) = A·w, whose Jacobian is known: the penalty,
the running mean and its checkpoint state against StyleGAN2's formulas written out here."""

import math

import pytest
import torch

from ganforge.components.losses.path_length import PathLength
from ganforge.contracts import check_contract, check_instance
from ganforge.records import GeneratorPass
from ganforge.registry import default_registry

LAYERS, W_DIM, SHAPE = 3, 4, (2, 3, 3)  # styles (n, 3, 4) → images (n, 2, 3, 3)
PIXELS = 2 * 3 * 3


class LinearGenerator:
    """images = A · flatten(styles), styles drawn fresh each pass (a GeneratorPass built by hand)."""

    def __init__(self, seed: int = 0, *, from_w: bool = False):
        self.from_w = from_w  # styles = one w repeated per layer (a shared entry), else drawn per layer
        gen = torch.Generator().manual_seed(seed)
        self.A = torch.randn(PIXELS, LAYERS * W_DIM, generator=gen).requires_grad_(True)
        self.draws = torch.Generator().manual_seed(seed + 1)
        self.calls: list[int] = []

    def __call__(self, n: int) -> GeneratorPass:
        self.calls.append(n)
        if self.from_w:
            w = torch.randn(n, W_DIM, generator=self.draws).requires_grad_(True)
            styles = w.unsqueeze(1).repeat(1, LAYERS, 1)
        else:
            styles = torch.randn(n, LAYERS, W_DIM, generator=self.draws).requires_grad_(True)
            w = styles[:, 0]
        images = (styles.flatten(1) @ self.A.T).reshape(n, *SHAPE)
        return GeneratorPass(images=images, context={"style": styles, "w": w})


def _lengths(A: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """‖Jᵀy‖ for J = A: the gradient of Σ images·y w.r.t. styles is yᵀA, whatever the styles."""
    y = torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) / math.sqrt(3 * 3)
    grads = (y.flatten(1) @ A.detach()).reshape(n, LAYERS, W_DIM)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()  # (n,)


def test_penalty_and_running_mean_match_the_hand_computation():
    g, reg = LinearGenerator(), PathLength()
    fake = torch.zeros(6, *SHAPE)
    penalty = reg(fake=fake, generate=g, rng=torch.Generator().manual_seed(7))
    assert g.calls == [3]  # B // batch_shrink
    lengths = _lengths(g.A, 3, seed=7)
    pl_mean = 0.0 + 0.01 * (lengths.mean().item() - 0.0)
    expected = 2.0 * sum((v - pl_mean) ** 2 for v in lengths.tolist()) / 3
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    assert reg.state_dict()["pl_mean"] == pytest.approx(pl_mean, rel=1e-6)

    penalty = reg(fake=fake, generate=g, rng=torch.Generator().manual_seed(8))
    lengths = _lengths(g.A, 3, seed=8)
    pl_mean = pl_mean + 0.01 * (lengths.mean().item() - pl_mean)  # lerp by decay
    assert reg.state_dict()["pl_mean"] == pytest.approx(pl_mean, rel=1e-6)
    assert penalty.item() == pytest.approx(2.0 * sum((v - pl_mean) ** 2 for v in lengths.tolist()) / 3, rel=1e-5)


def test_settings_and_gradient_to_the_generator():
    g, reg = LinearGenerator(), PathLength(weight=0.5, decay=1.0, batch_shrink=1)
    penalty = reg(fake=torch.zeros(4, *SHAPE), generate=g, rng=torch.Generator().manual_seed(3))
    assert g.calls == [4]
    lengths = _lengths(g.A, 4, seed=3)
    # decay 1: the running mean is this batch's mean length (undetached, as the reference uses it)
    expected = 0.5 * ((lengths - lengths.mean()) ** 2).mean().item()
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    penalty.backward()  # create_graph: the penalty is differentiable in G's parameters
    assert g.A.grad is not None and torch.isfinite(g.A.grad).all() and g.A.grad.abs().sum() > 0


def test_at_least_one_image():
    g = LinearGenerator()
    PathLength()(fake=torch.zeros(1, *SHAPE), generate=g, rng=torch.Generator().manual_seed(0))
    assert g.calls == [1]


def test_a_shared_context_entry():
    g = LinearGenerator(from_w=True)
    reg = PathLength(context="w", decay=1.0)
    penalty = reg(fake=torch.zeros(4, *SHAPE), generate=g, rng=torch.Generator().manual_seed(5))
    y = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(5)) / 3.0
    # w feeds every layer's block of A: its gradient is the sum of the per-layer blocks of yᵀA
    lengths = (y.flatten(1) @ g.A.detach()).reshape(2, LAYERS, W_DIM).sum(dim=1).norm(dim=1)
    assert penalty.item() == pytest.approx(2.0 * ((lengths - lengths.mean()) ** 2).mean().item(), rel=1e-5)


def test_missing_context_entry_is_named():
    with pytest.raises(ValueError, match="'styles'.*its entries: style, w"):
        PathLength(context="styles")(fake=torch.zeros(2, *SHAPE), generate=LinearGenerator(),
                                     rng=torch.Generator().manual_seed(0))


def test_state_round_trip_resumes_exactly():
    g1, g2 = LinearGenerator(), LinearGenerator()
    a = PathLength()
    fake = torch.zeros(6, *SHAPE)
    a(fake=fake, generate=g1, rng=torch.Generator().manual_seed(1))
    g2(3)  # keep g2's draws in step with g1's
    state = a.state_dict()
    assert isinstance(state["pl_mean"], float) and state["pl_mean"] > 0
    b = PathLength()
    b.load_state_dict(state)
    assert b.state_dict() == state
    pa = a(fake=fake, generate=g1, rng=torch.Generator().manual_seed(2))
    pb = b(fake=fake, generate=g2, rng=torch.Generator().manual_seed(2))
    assert torch.equal(pa, pb) and a.state_dict() == b.state_dict()


def test_registered_as_a_generator_regulariser():
    component = default_registry().get("regularizer", "path_length")
    assert component.obj is PathLength and PathLength.network == "generator"
    check_contract("regularizer", PathLength)
    check_instance("regularizer", component.build({"weight": 1.0}))
