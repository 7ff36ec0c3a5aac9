"""Spectral norm's power iteration advances once per update, with or without gradient accumulation.

Checked two ways on the tiny blueprint: by counting power-method calls per layer, and by comparing
u/v after one training step with a power iteration written out here from the same start.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from support import TINY


def _trainer(tmp_path, accumulation: int):
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    return build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64",
                                               f"train.grad_accumulation={accumulation}"],
                         placement=place_process("cpu"), out=tmp_path, data="real")


def _layers(network: nn.Module) -> list[tuple[torch.Tensor, _SpectralNorm]]:
    """(weight as a matrix, its spectral-norm parametrisation) for every normalised weight."""
    out = []
    for module in network.modules():
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations.weight
            sn = plist[0]
            assert isinstance(sn, _SpectralNorm) and sn.dim == 0  # tiny has no transposed convs
            out.append((plist.original.detach().flatten(1).clone(), sn))
    return out


def _hand_iterations(weight: torch.Tensor, v: torch.Tensor, times: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's order: u ← W v / ‖W v‖, then v ← Wᵀ u / ‖Wᵀ u‖."""
    u = None
    for _ in range(times):
        u = F.normalize(weight @ v, dim=0, eps=1e-12)
        v = F.normalize(weight.T @ u, dim=0, eps=1e-12)
    return u, v


@pytest.mark.parametrize("accumulation", [1, 2])
def test_one_power_iteration_per_update(tmp_path, monkeypatch, accumulation):
    trainer = _trainer(tmp_path, accumulation)
    calls: dict[int, int] = {}
    original = _SpectralNorm._power_method

    def counting(self, weight_mat, n_power_iterations):  # type: ignore[no-untyped-def]
        calls[id(self)] = calls.get(id(self), 0) + 1
        return original(self, weight_mat, n_power_iterations)

    monkeypatch.setattr(_SpectralNorm, "_power_method", counting)
    d_layers, g_layers = _layers(trainer.update.discriminator), _layers(trainer.update.generator)
    start = {id(sn): sn._v.clone() for _, sn in d_layers + g_layers}
    trainer.train_step()

    # D: once in its update. G: once while making D's fakes, once in its own update (as without
    # accumulation); G's weights do not change in between, so that is two iterations on one W.
    assert [calls.get(id(sn)) for _, sn in d_layers] == [1] * len(d_layers)
    assert [calls.get(id(sn)) for _, sn in g_layers] == [2] * len(g_layers)
    for layers, times in ((d_layers, 1), (g_layers, 2)):
        for weight, sn in layers:
            u, v = _hand_iterations(weight, start[id(sn)], times)
            torch.testing.assert_close(sn._u, u, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(sn._v, v, rtol=1e-5, atol=1e-6)
