"""ada_augment against its transforms written out in numpy, and the ada controller against the reference heuristic
(NVlabs/stylegan2-ada-pytorch training/training_loop.py lines 311-315) computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
import torch

from ganforge.records import DiscriminatorOutput
from ganforge.registry import default_registry

OFF = {"xflip": 0.0, "rotate90": 0.0, "xint": 0.0, "brightness": 0.0, "contrast": 0.0}


def augmenter(in_channels=None, **settings):
    return default_registry().get("layer", "ada_augment").build(settings, {"in_channels": in_channels}).train()


def controller(**settings):
    return default_registry().get("controller", "ada").build(settings, {})


def images(n=4, c=3, h=8, w=8, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def real(logits):
    return DiscriminatorOutput(logit=torch.as_tensor(logits, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------
# The augmenter
# ---------------------------------------------------------------------------------------------


def test_both_are_registered_and_the_layer_requires_its_controller():
    assert default_registry().get("layer", "ada_augment").obj.requires == ("controller:ada",)
    assert default_registry().get("controller", "ada") is not None


def test_p_zero_is_the_identity_in_training_mode():
    layer = augmenter()
    assert float(layer.p) == 0.0 and layer.training
    x = images()
    torch.manual_seed(1)
    assert torch.equal(layer(x), x)


def test_eval_mode_is_the_identity_even_at_p_one():
    layer = augmenter(initial_p=1.0).eval()
    x = images()
    assert layer(x) is x


def reference(x: np.ndarray, seed: int, *, p: float, xint_max: float = 0.125, b_std: float = 0.2,
              c_std: float = 0.5) -> np.ndarray:
    """The reference's draws (augment.py lines 196-325, same calls and order), applied by numpy."""
    n, _, h, w = x.shape
    torch.manual_seed(seed)
    flip = torch.floor(torch.rand([n]) * 2) * (torch.rand([n]) < p)
    turns = torch.floor(torch.rand([n]) * 4) * (torch.rand([n]) < p)
    t = (torch.rand([n, 2]) * 2 - 1) * xint_max * (torch.rand([n, 1]) < p)
    b = torch.randn([n]) * b_std * (torch.rand([n]) < p)
    c = torch.exp2(torch.randn([n]) * c_std)
    c = torch.where(torch.rand([n]) < p, c, torch.ones(n))
    out = np.empty_like(x)
    for i in range(n):
        img = x[i][:, :, ::-1] if flip[i] == 1 else x[i]
        img = np.rot90(img, int(turns[i]), axes=(1, 2))
        dw, dh = int(torch.round(t[i, 0] * w)), int(torch.round(t[i, 1] * h))
        padded = np.pad(img, ((0, 0), (h, h), (w, w)), mode="reflect")      # out(y, x) = in(y - dh, x - dw)
        img = padded[:, h - dh:2 * h - dh, w - dw:2 * w - dw]
        out[i] = (img + float(b[i])) * float(c[i])
    return out


def test_p_one_applies_every_transform_as_drawn():
    x = images(n=16)
    layer = augmenter(initial_p=1.0)
    torch.manual_seed(7)
    out = layer(x)
    np.testing.assert_allclose(out.numpy(), reference(x.numpy(), 7, p=1.0), rtol=1e-6, atol=1e-6)


def test_intermediate_p_applies_the_drawn_subset():
    x = images(n=32, h=6, w=6)
    layer = augmenter(initial_p=0.4, xint_max=0.5)
    torch.manual_seed(3)
    out = layer(x)
    np.testing.assert_allclose(out.numpy(), reference(x.numpy(), 3, p=0.4, xint_max=0.5), rtol=1e-6, atol=1e-6)


def test_p_one_always_augments():
    x = images(n=64)
    out = augmenter(initial_p=1.0, **{**OFF, "brightness": 1.0})(x)
    assert ((out - x).abs().amax(dim=(1, 2, 3)) > 0).all()      # every image shifted in brightness


def test_p_is_the_share_of_images_augmented():
    x = torch.zeros(4000, 1, 1, 1)
    torch.manual_seed(0)
    out = augmenter(initial_p=0.3, in_channels=1, **{**OFF, "brightness": 1.0})(x)
    share = (out != 0).float().mean().item()
    assert abs(share - 0.3) < 0.03


def test_integer_translation_reads_by_reflection():
    x = torch.arange(8, dtype=torch.float64).reshape(1, 1, 1, 8).expand(2, 1, 3, 8).contiguous()
    from ganforge.components.layers.ada import _translate_reflect
    out = _translate_reflect(x, shift_h=torch.tensor([0.0, 0.0]), shift_w=torch.tensor([2.0, -3.0]), max_fraction=0.5)
    assert out[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]
    assert out[1, 0, 0].tolist() == [3, 4, 5, 6, 7, 6, 5, 4]


def test_gradients_flow_to_the_input():
    x = images(n=8).requires_grad_(True)
    torch.manual_seed(0)
    augmenter(initial_p=1.0)(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_it_refuses_what_is_not_its_images():
    with pytest.raises(ValueError, match=r"images \(B, 3, H, W\)"):
        augmenter(in_channels=3)(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="images"):
        augmenter()(torch.zeros(2, 16))


def test_quarter_turns_need_square_images():
    with pytest.raises(ValueError, match="square"):
        augmenter(initial_p=1.0)(torch.zeros(2, 3, 4, 6))
    augmenter(initial_p=1.0, rotate90=0.0)(torch.zeros(2, 3, 4, 6))


def test_runs_on_the_meta_device_as_assembly_probes_it():
    with torch.device("meta"):
        out = augmenter(initial_p=0.5)(torch.empty(2, 3, 8, 8))
    assert out.shape == (2, 3, 8, 8)


def test_p_is_a_buffer_and_a_logged_scalar():
    layer = augmenter(initial_p=0.25)
    assert "p" in dict(layer.named_buffers()) and "p" in layer.state_dict()
    assert float(layer.logged_scalars()["p"]) == 0.25


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------


def test_the_reference_defaults():
    ctl = controller()
    assert (ctl.target, ctl.interval, ctl.speed_kimg) == (0.6, 4, 500.0)
    with pytest.raises(pydantic.ValidationError):
        default_registry().get("controller", "ada").validate({"interval": 0})


def test_confident_real_logits_raise_p_by_the_images_seen():
    layer, ctl = augmenter(), controller()
    ctl.attach(modules=[layer])
    for step in range(3):
        ctl.feedback(step=step, real=real([0.5, 2.0, 0.1, 3.0, 1.0, 0.2, 0.7, 9.0]))
        assert ctl.p == 0.0                       # no update before the interval ends
    ctl.feedback(step=3, real=real([1.0] * 8))
    expected = 8 * 4 / (500.0 * 1000)             # r_t = 1 > 0.6: + batch × interval / (kimg × 1000)
    assert ctl.p == expected
    assert float(layer.p) == np.float32(expected)


def test_unconfident_real_logits_keep_p_at_zero():
    layer, ctl = augmenter(), controller()
    ctl.attach(modules=[layer])
    for step in range(8):
        ctl.feedback(step=step, real=real([-1.0] * 8))
    assert ctl.p == 0.0 and float(layer.p) == 0.0


def test_p_falls_from_its_initial_value_and_stays_at_the_target():
    layer, ctl = augmenter(initial_p=0.01), controller(interval=2, speed_kimg=100.0)
    ctl.attach(modules=[layer])
    start = float(np.float32(0.01))               # a fresh controller adopts the modules' p buffer
    assert ctl.p == start
    ctl.feedback(step=0, real=real([-1.0, 1.0]))
    ctl.feedback(step=1, real=real([-1.0, -1.0]))  # r_t = -0.5 < 0.6
    assert ctl.p == start - 2 * 2 / (100.0 * 1000)
    at_target = controller(target=0.5, interval=1)
    at_target.attach(modules=[augmenter(initial_p=0.2)])
    at_target.feedback(step=0, real=real([1.0, 1.0, 1.0, -1.0]))  # r_t = 0.5 = target: sign 0
    assert at_target.p == float(np.float32(0.2))


def test_the_batch_is_counted_not_assumed():
    ctl = controller(interval=2)
    ctl.attach(modules=[augmenter()])
    ctl.feedback(step=0, real=real([1.0] * 3))
    ctl.feedback(step=1, real=real([1.0] * 5))
    assert ctl.p == 8 / (500.0 * 1000)


def test_resume_continues_exactly():
    logits = torch.randn(11, 6, generator=torch.Generator().manual_seed(0)) + 1.0
    whole = controller(interval=3, speed_kimg=0.05)
    whole.attach(modules=[augmenter()])
    for step in range(11):
        whole.feedback(step=step, real=real(logits[step]))

    first = controller(interval=3, speed_kimg=0.05)
    first.attach(modules=[augmenter()])
    for step in range(7):                         # stops mid-interval: partial sums are state
        first.feedback(step=step, real=real(logits[step]))
    state = json.loads(json.dumps(first.state_dict()))    # plain python numbers
    assert state["count"] == 6 and isinstance(state["p"], float)

    layer = augmenter()
    resumed = controller(interval=3, speed_kimg=0.05)
    resumed.attach(modules=[layer])
    resumed.load_state_dict(state)
    assert float(layer.p) == np.float32(first.p)  # restored p is written into the module
    for step in range(7, 11):
        resumed.feedback(step=step, real=real(logits[step]))
    assert resumed.state_dict() == whole.state_dict()
    assert whole.p > 0


def test_attach_refuses_modules_without_p_or_with_different_starts():
    with pytest.raises(TypeError, match="`p` buffer"):
        controller().attach(modules=[torch.nn.Identity()])
    with pytest.raises(ValueError, match="different p"):
        controller().attach(modules=[augmenter(initial_p=0.1), augmenter(initial_p=0.2)])
