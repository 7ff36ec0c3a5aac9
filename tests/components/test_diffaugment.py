"""diff_augment against DiffAugment's operations written out by hand (numpy), and its contract with the engine.

The expected random parameters are drawn in the test from the same seed, with the calls of the
reference (mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py lines 22-69).
"""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from ganforge.components.layers.diffaugment import brightness, contrast, cutout, saturation, translate
from ganforge.registry import default_registry


def build(**settings):
    return default_registry().get("layer", "diff_augment").build(settings, {"in_channels": 3})


def shifted(x: np.ndarray, dh: int, dw: int) -> np.ndarray:
    """out[c, i, j] = x[c, i + dh, j + dw], zero outside: one image, by loops."""
    out = np.zeros_like(x)
    _, h, w = x.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i + dh < h and 0 <= j + dw < w:
                out[:, i, j] = x[:, i + dh, j + dw]
    return out


def images(n=3, c=3, h=8, w=8, seed=0, dtype=torch.float64):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_the_registry_builds_it_with_the_reference_defaults():
    layer = build()
    assert layer.policy == ("color", "translation", "cutout")
    assert (layer.translation_ratio, layer.cutout_ratio) == (0.125, 0.5)
    assert not getattr(layer, "batch_dependent", False)


def test_eval_mode_is_the_identity_and_draws_nothing():
    layer = build().eval()
    x = images()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert layer(x) is x
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dh, dw", [(0, 0), (1, 0), (0, -2), (3, -1), (-7, 7), (8, 0), (-9, 2)])
def test_translate_equals_a_hand_shifted_image_with_zero_padding(dh, dw):
    x = images(n=2, h=8, w=7)
    out = translate(x, torch.tensor([dh, 0]), torch.tensor([dw, 0]))
    np.testing.assert_array_equal(out[0].numpy(), shifted(x[0].numpy(), dh, dw))
    np.testing.assert_array_equal(out[1].numpy(), x[1].numpy())  # each image its own shift


def test_the_layer_translates_by_the_shifts_drawn_from_the_seed():
    x = images(n=5, h=16, w=8)
    torch.manual_seed(11)
    out = build(policy="translation").train()(x)
    torch.manual_seed(11)
    reach_h, reach_w = int(16 * 0.125 + 0.5), int(8 * 0.125 + 0.5)           # 2 and 1 pixels
    dh = torch.randint(-reach_h, reach_h + 1, size=[5, 1, 1]).reshape(-1)
    dw = torch.randint(-reach_w, reach_w + 1, size=[5, 1, 1]).reshape(-1)
    assert dh.abs().max() <= 2 and dw.abs().max() <= 1
    for b in range(5):
        np.testing.assert_array_equal(out[b].numpy(), shifted(x[b].numpy(), int(dh[b]), int(dw[b])))


@pytest.mark.parametrize("centre, size", [((4, 4), (4, 4)), ((3, 5), (3, 2)), ((0, 7), (4, 4)), ((8, 8), (4, 4))])
def test_cutout_zeroes_the_expected_rectangle(centre, size):
    x = torch.ones(1, 2, 8, 8)
    out = cutout(x, torch.tensor([centre[0]]), torch.tensor([centre[1]]), size)
    expected = np.ones((2, 8, 8))
    top, left = centre[0] - size[0] // 2, centre[1] - size[1] // 2
    expected[:, max(top, 0):top + size[0], max(left, 0):left + size[1]] = 0
    np.testing.assert_array_equal(out[0].numpy(), expected)
    if centre == (4, 4):
        assert (out == 0).sum() == 2 * 16          # a whole 4×4 square in each channel


def test_the_layer_cuts_a_square_of_half_the_side_at_the_drawn_centre():
    x = torch.rand(6, 3, 10, 10) + 1                 # no zero of its own
    torch.manual_seed(5)
    out = build(policy="cutout").train()(x)
    torch.manual_seed(5)
    side = int(10 * 0.5 + 0.5)                       # 5, odd: centres 0..9
    ch = torch.randint(0, 10, size=[6, 1, 1]).reshape(-1)
    cw = torch.randint(0, 10, size=[6, 1, 1]).reshape(-1)
    for b in range(6):
        hole = np.zeros((10, 10), dtype=bool)
        top, left = int(ch[b]) - side // 2, int(cw[b]) - side // 2
        hole[max(top, 0):top + side, max(left, 0):left + side] = True
        np.testing.assert_array_equal((out[b] == 0).numpy(), np.broadcast_to(hole, (3, 10, 10)))
        np.testing.assert_array_equal(out[b].numpy()[:, ~hole], x[b].numpy()[:, ~hole])


def test_colour_ops_against_their_formulas():
    x = images(n=2)
    a = x.numpy()
    f = torch.tensor([0.3, 1.7], dtype=torch.float64).reshape(2, 1, 1, 1)
    fn = f.numpy()
    np.testing.assert_allclose(brightness(x, f).numpy(), a + fn)
    np.testing.assert_allclose(saturation(x, f).numpy(), (a - a.mean(1, keepdims=True)) * fn + a.mean(1, keepdims=True))
    m = a.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(contrast(x, f).numpy(), (a - m) * fn + m)


def test_the_layer_applies_colour_with_the_drawn_factors():
    x = images(n=4)
    torch.manual_seed(2)
    out = build(policy="color").train()(x)
    torch.manual_seed(2)
    u = [torch.rand(4, 1, 1, 1, dtype=torch.float64).numpy() for _ in range(3)]
    a = x.numpy() + (u[0] - 0.5)
    a = (a - a.mean(1, keepdims=True)) * (u[1] * 2) + a.mean(1, keepdims=True)
    m = a.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out.numpy(), (a - m) * (u[2] + 0.5) + m, rtol=1e-12, atol=1e-12)
    assert out.shape == x.shape


def test_gradients_flow_to_the_input_and_are_correct():
    layer = build().train()
    x = images(n=2, h=6, w=6).requires_grad_(True)

    def seeded(inp):   # the same draws on every call, as gradcheck needs
        torch.manual_seed(0)
        return layer(inp)

    assert torch.autograd.gradcheck(seeded, (x,))
    out = seeded(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_runs_on_the_meta_device_as_assembly_probes_it():
    with torch.device("meta"):
        layer = build().train()
        out = layer(torch.empty(2, 3, 16, 16))
    assert out.shape == (2, 3, 16, 16) and out.device.type == "meta"


@pytest.mark.parametrize("policy", ["color,zoom", "Color", "color,,cutout", "", "color translation"])
def test_an_unknown_policy_is_refused_with_the_setting_named(policy):
    component = default_registry().get("layer", "diff_augment")
    with pytest.raises(pydantic.ValidationError, match="policy"):
        component.validate({"policy": policy})


def test_direct_construction_names_the_unknown_policy():
    from ganforge.components.layers.diffaugment import DiffAugment
    with pytest.raises(ValueError, match="'zoom'.*color, translation, cutout"):
        DiffAugment(policy="color,zoom")


def test_the_policy_order_is_kept():
    assert build(policy="cutout,color").policy == ("cutout", "color")
