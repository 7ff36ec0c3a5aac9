"""minibatch_stddev against a loop written from the ProGAN description, and its contract with the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.registry import default_registry
from support import on_threads


def build(**kw):
    return default_registry().get("layer", "minibatch_stddev").build(kw, {"in_channels": kw.pop("in_channels", 4)})


def reference(x: np.ndarray, group: int, f: int, eps: float) -> np.ndarray:
    """Per image: the std over its group (members n//group apart) of every feature, averaged per channel slice."""
    n, c, h, w = x.shape
    while n % group:
        group -= 1
    m = n // group
    out = np.empty((n, f, h, w))
    for i in range(n):
        members = x[[i % m + j * m for j in range(group)]]          # (group, c, h, w)
        std = np.sqrt(members.var(axis=0) + eps)                    # population variance, as in ProGAN
        for s in range(f):
            out[i, s] = std[s * (c // f):(s + 1) * (c // f)].mean()
    return np.concatenate([x, out], axis=1)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), group=st.integers(2, 5), f=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_matches_a_loop_over_groups(n, group, f, seed):
    x = torch.randn(n, 4, 3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    layer = default_registry().get("layer", "minibatch_stddev").build({"group_size": group, "num_channels": f},
                                                                      {"in_channels": 4})
    np.testing.assert_allclose(layer(x).numpy(), reference(x.numpy(), group, f, 1e-8), rtol=1e-10, atol=1e-12)


def test_copies_give_zero_spread_and_the_channel_is_inferred():
    layer = build(group_size=4)
    x = torch.randn(1, 4, 3, 3).expand(8, -1, -1, -1)
    assert torch.allclose(layer(x)[:, 4], torch.full((8, 3, 3), 1e-4))  # sqrt(eps)
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint
    from support import TINY

    loaded = load_blueprint(str(TINY), overrides=["discriminator.blocks.2={type: minibatch_stddev}",
                                                  "discriminator.blocks.3={type: down_resblock, channels: 64, "
                                                  "downsample: false}"])
    plan = assemble(loaded).discriminator
    layer_info = next(info for info in plan.layers if info.component == "minibatch_stddev")
    assert layer_info.output_shape[0] == layer_info.input_shape[0] + 1


def test_engine_never_mixes_real_and_fake_in_one_pass():
    from ganforge.engine.step import batch_dependent as _batch_dependent

    assert _batch_dependent(torch.nn.Sequential(build()))


def test_channels_must_split_evenly():
    with pytest.raises(Exception, match="must divide"):
        build(in_channels=5, num_channels=2)


@settings(max_examples=20, deadline=None)
@given(labels=st.lists(st.integers(0, 2), min_size=1, max_size=9), f=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_by_class_groups_each_image_with_its_own_class(labels, f, seed):
    x = torch.randn(len(labels), 4, 2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    layer = default_registry().get("layer", "minibatch_stddev").build({"num_channels": f, "by_class": True},
                                                                      {"in_channels": 4, "num_classes": 3})
    out = layer(x, torch.tensor(labels)).numpy()
    xs = x.numpy()
    for i, label in enumerate(labels):
        same = xs[[j for j, other in enumerate(labels) if other == label]]
        std = np.sqrt(same.var(axis=0) + 1e-8)
        for s in range(f):
            np.testing.assert_allclose(out[i, 4 + s], std[s * (4 // f):(s + 1) * (4 // f)].mean(), rtol=1e-10)
    np.testing.assert_array_equal(out[:, :4], xs)


def test_by_class_sees_within_class_copies_that_mixed_groups_miss():
    x = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    copies = x.repeat_interleave(4, dim=0)              # 16 images: 4 classes × 4 copies each
    labels = torch.arange(4).repeat_interleave(4)
    mixed = build(group_size=4)(copies[torch.randperm(16, generator=torch.Generator().manual_seed(1))])
    by_class = default_registry().get("layer", "minibatch_stddev").build({"by_class": True},
                                                                         {"in_channels": 4, "num_classes": 4})
    assert float(mixed[:, 4].mean()) > 0.3
    assert torch.allclose(by_class(copies, labels)[:, 4], torch.full((16, 3, 3), 1e-4))


def test_by_class_gradients_are_the_same_on_every_run_with_several_threads():
    """Picking each image's class row by indexing made the backward a scatter-add, whose sums came
    out in a different order from run to run on two CPU threads (two tiny runs of one seed drifted
    apart by 6e-3 within 3 steps). The layer must give bit-identical gradients every time."""
    layer = default_registry().get("layer", "minibatch_stddev").build({"by_class": True},
                                                                      {"in_channels": 64, "num_classes": 4})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, 4, 4, generator=generator)
    labels = torch.randint(0, 4, (32,), generator=generator)
    upstream = torch.randn(32, 65, 4, 4, generator=generator)

    def gradient():
        leaf = x.clone().requires_grad_(True)
        layer(leaf, labels).backward(upstream)
        return leaf.grad

    grads = on_threads(2, gradient, times=20)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("by_class", [True, False])
def test_the_spread_is_computed_in_fp32_under_autocast(by_class):
    """Autocast would run the class sums' products in bf16 (maps off by up to 7e-3); they must not change."""
    layer = default_registry().get("layer", "minibatch_stddev").build({"by_class": by_class},
                                                                      {"in_channels": 64, "num_classes": 4})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, 4, 4, generator=generator) + 3.0
    labels = torch.randint(0, 4, (32,), generator=generator)
    plain = layer(x, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = layer(x, labels)
    assert under.dtype == torch.float32 and torch.equal(under, plain)
