"""Tests of the ganforge-example plugin; they run whether or not the package is installed."""

from __future__ import annotations

import ast
import math
import sys
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch

PLUGIN_ROOT = Path(__file__).resolve().parents[1]

try:
    import ganforge_example  # noqa: F401  (installed copy, if any)
except ImportError:
    sys.path.insert(0, str(PLUGIN_ROOT / "src"))

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ganforge_example.layers import CoordConv, coordinate_channels  # noqa: E402
from ganforge_example.losses import RelativisticHinge  # noqa: E402


# -- CoordConv ----------------------------------------------------------------


@pytest.mark.parametrize("with_radius", [False, True])
@pytest.mark.parametrize("kernel_size", [1, 3, 4, 5])
def test_coord_conv_output_shape(kernel_size, with_radius):
    layer = CoordConv(channels=7, kernel_size=kernel_size, with_radius=with_radius, in_channels=3)
    out = layer(torch.randn(2, 3, 8, 6))
    assert out.shape == (2, 7, 8, 6)
    assert layer.conv.in_channels == 3 + (3 if with_radius else 2)


@pytest.mark.parametrize("kernel_size", [2, 4])
def test_coord_conv_even_kernel_pads_like_torch_same(kernel_size):
    layer = CoordConv(channels=2, kernel_size=kernel_size, in_channels=1)
    x = torch.randn(1, 1, 5, 5)
    features = torch.cat([x, coordinate_channels(1, 5, 5)], dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.nn.functional.conv2d(features, layer.conv.weight, layer.conv.bias, padding="same")
    torch.testing.assert_close(layer(x), expected)


def test_coord_conv_defaults():
    layer = CoordConv(in_channels=1)
    assert (layer.channels, layer.kernel_size, layer.with_radius) == (64, 3, False)
    assert layer(torch.zeros(1, 1, 4, 4)).shape == (1, 64, 4, 4)


def test_coordinate_channels_by_hand():
    coords = coordinate_channels(2, 3, 3, with_radius=True)
    assert coords.shape == (2, 3, 3, 3)
    x = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
    y = x.T
    r = torch.tensor([[1.0, s := 1 / math.sqrt(2), 1.0], [s, 0.0, s], [1.0, s, 1.0]])
    for b in range(2):
        torch.testing.assert_close(coords[b, 0], x)
        torch.testing.assert_close(coords[b, 1], y)
        torch.testing.assert_close(coords[b, 2], r)
    # Non-square: x follows the width, y the height; a size-1 axis sits at the centre.
    wide = coordinate_channels(1, 2, 5)
    torch.testing.assert_close(wide[0, 0, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(wide[0, 1, :, 0], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(coordinate_channels(1, 1, 1)[0, :, 0, 0], torch.zeros(2))


def test_coord_conv_passes_coordinates_through():
    """A 1x1 conv with one-hot weights exposes exactly [input, x, y] for a 1-channel 3x3 image."""
    layer = CoordConv(channels=3, kernel_size=1, in_channels=1)
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.zero_()
        for out_ch, in_ch in enumerate([0, 1, 2]):  # input channel order: image, x, y
            layer.conv.weight[out_ch, in_ch, 0, 0] = 1.0
    image = torch.arange(9.0).view(1, 1, 3, 3)
    out = layer(image)
    torch.testing.assert_close(out[0, 0], image[0, 0])
    torch.testing.assert_close(out[0, 1], torch.tensor([[-1.0, 0.0, 1.0]] * 3))
    torch.testing.assert_close(out[0, 2], torch.tensor([[-1.0] * 3, [0.0] * 3, [1.0] * 3]))


def test_coord_conv_follows_input_dtype():
    layer = CoordConv(channels=2, in_channels=1).double()
    assert layer(torch.zeros(1, 1, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_coord_conv_on_meta_device():
    with torch.device("meta"):
        layer = CoordConv(channels=16, kernel_size=3, with_radius=True, in_channels=4)
        out = layer(torch.empty(5, 4, 32, 32))
    assert out.device.type == "meta"
    assert out.shape == (5, 16, 32, 32)


@pytest.mark.parametrize("bad", [{"channels": 0}, {"kernel_size": 0}, {"in_channels": 0}])
def test_coord_conv_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        CoordConv(**{"in_channels": 1, **bad})


def test_coord_conv_rejects_non_images():
    with pytest.raises(ValueError, match="image batch"):
        CoordConv(in_channels=3)(torch.zeros(2, 3))


# -- RelativisticHinge ----------------------------------------------------------

# r = [2, 0] (mean 1), f = [1, -1] (mean 0).
#   D: r - mean f = [2, 0]  -> relu(1 - .) = [0, 1] -> 0.5
#      f - mean r = [0, -2] -> relu(1 + .) = [1, 0] -> 0.5      total 1.0
#   G: f - mean r = [0, -2] -> relu(1 - .) = [1, 3] -> 2.0
#      r - mean f = [2, 0]  -> relu(1 + .) = [3, 1] -> 2.0      total 4.0
REAL = [2.0, 0.0]
FAKE = [1.0, -1.0]


def test_relativistic_hinge_known_values():
    loss = RelativisticHinge()
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    torch.testing.assert_close(loss.discriminator_loss(real_logits=r, fake_logits=f), torch.tensor(1.0))
    torch.testing.assert_close(loss.generator_loss(fake_logits=f, real_logits=r), torch.tensor(4.0))
    # (B, 1) logits give the same numbers.
    torch.testing.assert_close(
        loss.discriminator_loss(real_logits=r[:, None], fake_logits=f[:, None]), torch.tensor(1.0)
    )


def test_relativistic_hinge_margin():
    loss = RelativisticHinge(margin=0.5)
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    # D: relu(0.5 - [2, 0]) = [0, .5] -> .25; relu(0.5 + [0, -2]) = [.5, 0] -> .25
    torch.testing.assert_close(loss.discriminator_loss(real_logits=r, fake_logits=f), torch.tensor(0.5))
    with pytest.raises(ValueError):
        RelativisticHinge(margin=-1.0)


def test_relativistic_hinge_gradients():
    loss = RelativisticHinge()
    r = torch.tensor(REAL, requires_grad=True)
    f = torch.tensor(FAKE, requires_grad=True)
    loss.discriminator_loss(real_logits=r, fake_logits=f).backward()
    # Hand-derived: d/dr = [0, -1/2] + (-1/4)*[1, 1]; d/df = [1/2, 0] + (1/4)*[1, 1].
    torch.testing.assert_close(r.grad, torch.tensor([-0.25, -0.75]))
    torch.testing.assert_close(f.grad, torch.tensor([0.75, 0.25]))
    assert (r.grad < 0).all() and (f.grad > 0).all()  # D pushes reals up, fakes down

    r.grad = f.grad = None
    loss.generator_loss(fake_logits=f, real_logits=r).backward()
    assert (f.grad < 0).all()  # G pushes fake logits up ...
    assert (r.grad > 0).all()  # ... and (relatively) real logits down
    torch.testing.assert_close(f.grad, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(r.grad, torch.tensor([1.0, 1.0]))


def test_relativistic_hinge_declares_generator_needs_real():
    assert RelativisticHinge.generator_needs_real is True
    with pytest.raises(TypeError):  # real logits are required for G, by keyword only
        RelativisticHinge().generator_loss(fake_logits=torch.zeros(2))
    with pytest.raises(TypeError):
        RelativisticHinge().generator_loss(torch.zeros(2), torch.zeros(2))


logits = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(real=logits, fake=logits)
def test_relativistic_hinge_is_symmetric_and_nonnegative(real, fake):
    loss = RelativisticHinge()
    r, f = torch.tensor(real), torch.tensor(fake)
    d = loss.discriminator_loss(real_logits=r, fake_logits=f)
    g = loss.generator_loss(fake_logits=f, real_logits=r)
    assert d >= 0 and g >= 0
    torch.testing.assert_close(g, loss.discriminator_loss(real_logits=f, fake_logits=r))


# -- packaging and the ganforge contract -----------------------------------------


def _declared_entry_points() -> list[metadata.EntryPoint]:
    with open(PLUGIN_ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["dependencies"] == ["torch>=2.3"]
    group = project["entry-points"]["ganforge.plugins"]
    return [metadata.EntryPoint(name=n, value=v, group="ganforge.plugins") for n, v in group.items()]


def test_entry_points_resolve():
    eps = {ep.name: ep.load() for ep in _declared_entry_points()}
    assert eps == {"layer.coord_conv": CoordConv, "loss.relativistic_hinge": RelativisticHinge}


def test_code_does_not_import_ganforge():
    for path in (PLUGIN_ROOT / "src" / "ganforge_example").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n == "ganforge" or n.startswith("ganforge.") for n in names), path


def test_components_meet_the_ganforge_contract():
    """Load both through ganforge's plugin machinery, exactly as an installed plugin would be."""
    import pydantic

    from ganforge.plugins import PluginIndex
    from ganforge.registry import Registry

    registry = Registry(plugin_source=PluginIndex.from_entry_points(_declared_entry_points()))
    assert registry.broken_plugins == []

    layer = registry.get("layer", "coord_conv")
    assert layer.obj is CoordConv and layer.summary
    assert layer.context_params == {"in_channels"}
    assert all(not p.required for p in layer.parameters())  # every network setting has a default
    assert layer.validate({}) == {"channels": 64, "kernel_size": 3, "with_radius": False}
    with pytest.raises(pydantic.ValidationError):
        layer.validate({"chanels": 8})
    with pytest.raises(pydantic.ValidationError):
        layer.validate({"in_channels": 8})  # context, never a blueprint setting
    with torch.device("meta"):
        module = layer.build({"channels": 8, "with_radius": True}, {"in_channels": 3, "in_size": 16})
        assert module(torch.empty(2, 3, 16, 16)).shape == (2, 8, 16, 16)

    loss_component = registry.get("loss", "relativistic_hinge")
    assert loss_component.summary and loss_component.context_params == frozenset()
    loss = loss_component.build({"margin": 2.0})
    assert loss.margin == 2.0 and loss.generator_needs_real
    assert [c.name for c in registry.list()] == ["coord_conv", "relativistic_hinge"]
