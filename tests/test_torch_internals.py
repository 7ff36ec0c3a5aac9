"""torch's private spectral-norm internals that ganforge relies on, checked so an upgrade fails here.

``ganforge.components.layers.torch_spectral_norm`` is the only module that touches ``_SpectralNorm``, its
``_u``/``_v`` buffers, ``_reshape_weight_to_matrix`` and ``_power_method``. These tests check that
each still exists with the signature we call it with and still computes what we assume, by hand.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from ganforge.components.layers import torch_spectral_norm as adapter

PACKAGE = Path(adapter.__file__).resolve().parents[1]
PRIVATE = re.compile(r"_SpectralNorm\b|\._u\b|\._v\b|_reshape_weight_to_matrix|_power_method")


def test_private_names_exist_with_the_signatures_we_call():
    cls = parametrizations._SpectralNorm
    assert adapter.SpectralNormParametrization is cls
    assert list(inspect.signature(cls.__init__).parameters) == ["self", "weight", "n_power_iterations", "dim", "eps"]
    assert list(inspect.signature(cls._power_method).parameters) == ["self", "weight_mat", "n_power_iterations"]
    assert list(inspect.signature(cls._reshape_weight_to_matrix).parameters) == ["self", "weight"]
    layer = parametrizations.spectral_norm(nn.Linear(4, 3))
    step = layer.parametrizations.weight[0]
    assert type(step) is cls and adapter.is_spectral_norm(step)
    buffers = dict(step.named_buffers())
    assert set(buffers) == {"_u", "_v"}
    assert adapter.left_vector(step) is buffers["_u"] and adapter.right_vector(step) is buffers["_v"]
    assert buffers["_u"].shape == (3,) and buffers["_v"].shape == (4,)


def test_reshape_puts_dim_first():
    weight = torch.arange(24.0).reshape(2, 3, 4)
    step = adapter.FP32SpectralNorm(torch.randn(2, 3, 4), 1, 1, 1e-12)
    assert torch.equal(adapter.weight_matrix(step, weight), weight.permute(1, 0, 2).reshape(3, 8))
    step0 = adapter.FP32SpectralNorm(torch.randn(2, 3, 4), 1, 0, 1e-12)
    assert torch.equal(adapter.weight_matrix(step0, weight), weight.reshape(2, 12))


def test_one_power_iteration_matches_a_hand_computation():
    w = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    step = adapter.FP32SpectralNorm(w.clone(), 1, 0, 1e-12).double()
    u0, v0 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    adapter.set_singular_vectors(step, u0, v0)
    adapter.power_iteration(step, w, 1)
    u = w @ v0 / torch.linalg.vector_norm(w @ v0)  # u ← W v / ‖W v‖ = (1, 1)/√2
    v = w.T @ u / torch.linalg.vector_norm(w.T @ u)  # v ← Wᵀu / ‖Wᵀu‖ = (2, 2, 3)/√17
    assert torch.allclose(adapter.left_vector(step), u) and torch.allclose(adapter.right_vector(step), v)
    assert torch.allclose(adapter.left_vector(step), torch.tensor([1.0, 1.0], dtype=torch.float64) / 2 ** 0.5)
    assert torch.allclose(adapter.sigma_estimate(step, w), u @ w @ v)


def test_forward_divides_by_sigma_and_iterates_only_in_training():
    torch.manual_seed(0)
    w = torch.randn(5, 4)
    step = adapter.FP32SpectralNorm(w, 1, 0, 1e-12)
    step.train()
    u_before = adapter.left_vector(step).clone()
    out = step(w)
    assert not torch.equal(adapter.left_vector(step), u_before)  # training: one iteration advanced u/v
    assert torch.allclose(out, w / adapter.sigma_estimate(step, w))
    step.eval()
    u_frozen = adapter.left_vector(step).clone()
    assert torch.allclose(step(w), w / adapter.sigma_estimate(step, w))
    assert torch.equal(adapter.left_vector(step), u_frozen)  # eval: u/v untouched


def test_vector_normalisation_is_torchs():
    step = adapter.FP32SpectralNorm(torch.randn(3, 2), 1, 0, 1e-12)
    vector = torch.tensor([3.0, 4.0])
    assert torch.allclose(step(vector), F.normalize(vector, dim=0, eps=1e-12))


def test_private_internals_stay_in_the_adapter():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "torch_spectral_norm.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE.search(code) and "``" not in code:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "torch spectral-norm internals outside the adapter:\n" + "\n".join(offenders)
