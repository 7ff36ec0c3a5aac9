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

from ganforge_example.context import FiLM, LayerCodes  # noqa: E402
from ganforge_example.features import FeatureOutput, HingeFeatureMatching  # noqa: E402
from ganforge_example.layers import CoordConv, coordinate_channels  # noqa: E402
from ganforge_example.losses import RelativisticHinge  # noqa: E402
from ganforge_example.noise import InstanceNoise, LogitTracker  # noqa: E402
from ganforge_example.regularizers import ImageMeanPenalty  # noqa: E402


def _out(logits: torch.Tensor) -> object:
    """D's output as the engine hands it to a loss: a record with ``logit`` (ganforge.records.DiscriminatorOutput)."""
    from types import SimpleNamespace

    return SimpleNamespace(logit=logits.reshape(-1))


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
    torch.testing.assert_close(loss.discriminator_loss(real=_out(r), fake=_out(f)), torch.tensor(1.0))
    torch.testing.assert_close(loss.generator_loss(fake=_out(f), real=_out(r)), torch.tensor(4.0))
    # (B, 1) logits give the same numbers.
    torch.testing.assert_close(
        loss.discriminator_loss(real=_out(r[:, None]), fake=_out(f[:, None])), torch.tensor(1.0)
    )


def test_relativistic_hinge_margin():
    loss = RelativisticHinge(margin=0.5)
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    # D: relu(0.5 - [2, 0]) = [0, .5] -> .25; relu(0.5 + [0, -2]) = [.5, 0] -> .25
    torch.testing.assert_close(loss.discriminator_loss(real=_out(r), fake=_out(f)), torch.tensor(0.5))
    with pytest.raises(ValueError):
        RelativisticHinge(margin=-1.0)


def test_relativistic_hinge_gradients():
    loss = RelativisticHinge()
    r = torch.tensor(REAL, requires_grad=True)
    f = torch.tensor(FAKE, requires_grad=True)
    loss.discriminator_loss(real=_out(r), fake=_out(f)).backward()
    # Hand-derived: d/dr = [0, -1/2] + (-1/4)*[1, 1]; d/df = [1/2, 0] + (1/4)*[1, 1].
    torch.testing.assert_close(r.grad, torch.tensor([-0.25, -0.75]))
    torch.testing.assert_close(f.grad, torch.tensor([0.75, 0.25]))
    assert (r.grad < 0).all() and (f.grad > 0).all()  # D pushes reals up, fakes down

    r.grad = f.grad = None
    loss.generator_loss(fake=_out(f), real=_out(r)).backward()
    assert (f.grad < 0).all()  # G pushes fake logits up ...
    assert (r.grad > 0).all()  # ... and (relatively) real logits down
    torch.testing.assert_close(f.grad, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(r.grad, torch.tensor([1.0, 1.0]))


def test_relativistic_hinge_declares_generator_needs_real():
    assert RelativisticHinge.generator_needs_real is True
    with pytest.raises(TypeError):  # real logits are required for G, by keyword only
        RelativisticHinge().generator_loss(fake=_out(torch.zeros(2)))
    with pytest.raises(TypeError):
        RelativisticHinge().generator_loss(torch.zeros(2), torch.zeros(2))


logits = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(real=logits, fake=logits)
def test_relativistic_hinge_is_symmetric_and_nonnegative(real, fake):
    loss = RelativisticHinge()
    r, f = torch.tensor(real), torch.tensor(fake)
    d = loss.discriminator_loss(real=_out(r), fake=_out(f))
    g = loss.generator_loss(fake=_out(f), real=_out(r))
    assert d >= 0 and g >= 0
    torch.testing.assert_close(g, loss.discriminator_loss(real=_out(f), fake=_out(r)))


# -- FeatureOutput and HingeFeatureMatching -------------------------------------


def test_feature_output_by_hand():
    head = FeatureOutput(in_channels=2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[2.0, -1.0]]))
        head.linear.bias.fill_(0.5)
    x = torch.tensor([[[[1.0, -1.0], [3.0, -3.0]], [[-2.0, 2.0], [0.0, 4.0]]]])  # (1, 2, 2, 2)
    out = head(x)
    assert set(out) == {"logit", *FeatureOutput.outputs} == {"logit", "features"}
    # relu, then the mean over the 4 positions: (1 + 0 + 3 + 0) / 4 = 1, (0 + 2 + 0 + 4) / 4 = 1.5
    torch.testing.assert_close(out["features"], torch.tensor([[1.0, 1.5]]))
    torch.testing.assert_close(out["logit"], torch.tensor([[2 * 1.0 - 1.5 + 0.5]]))


def _record(logit, features):
    from ganforge.records import DiscriminatorOutput

    return DiscriminatorOutput.of({"logit": torch.tensor(logit)[:, None], "features": features})


def test_hinge_feature_matching_by_hand():
    from ganforge.records import LabelPair

    loss = HingeFeatureMatching(feature_weight=0.5)
    real_features = torch.tensor([[1.0, 0.0], [3.0, 2.0]], requires_grad=True)  # batch mean [2, 1]
    fake_features = torch.tensor([[0.0, 0.0], [2.0, 0.0]], requires_grad=True)  # batch mean [1, 0]
    real, fake = _record(REAL, real_features), _record(FAKE, fake_features)
    labels = LabelPair(real=None, fake=None)
    # D: mean(relu(1 - [2, 0])) = 0.5, mean(relu(1 + [1, -1])) = 1.0
    torch.testing.assert_close(loss.discriminator_loss(real=real, fake=fake, labels=labels), torch.tensor(1.5))
    # G: -mean([1, -1]) = 0, plus 0.5 · mean([1 - 2, 0 - 1]²) = 0.5
    g = loss.generator_loss(fake=fake, real=real, labels=labels)
    torch.testing.assert_close(g, torch.tensor(0.5))
    g.backward()
    # d/d fake_features[b, j] = 0.5 · 2 · (mean_fake_j - mean_real_j) / 2 features / 2 images = -0.25
    torch.testing.assert_close(fake_features.grad, torch.full((2, 2), -0.25))
    assert real_features.grad is None  # the real features are a fixed target for G


def test_hinge_feature_matching_without_the_term_is_plain_hinge():
    loss = HingeFeatureMatching(feature_weight=0.0)
    real, fake = _record(REAL, torch.randn(2, 3)), _record(FAKE, torch.randn(2, 3))
    torch.testing.assert_close(loss.generator_loss(fake=fake, real=real), -torch.tensor(FAKE).mean())
    assert HingeFeatureMatching.needs_outputs == ("features",) and HingeFeatureMatching.generator_needs_real
    with pytest.raises(ValueError):
        HingeFeatureMatching(feature_weight=-1.0)


def test_head_output_feeds_the_loss_through_ganforge_records():
    from ganforge.records import DiscriminatorOutput

    head = FeatureOutput(in_channels=4)
    real = DiscriminatorOutput.of(head(torch.randn(3, 4, 2, 2)))
    fake = DiscriminatorOutput.of(head(torch.randn(3, 4, 2, 2)))
    assert real.logit.shape == (3,) and real.features.shape == (3, 4)
    loss = HingeFeatureMatching()
    total = loss.discriminator_loss(real=real, fake=fake) + loss.generator_loss(fake=fake, real=real)
    total.backward()
    assert head.linear.weight.grad is not None


# -- ImageMeanPenalty ---------------------------------------------------------


def test_image_mean_penalty_by_hand():
    penalty = ImageMeanPenalty(weight=2.0, target=0.5)
    # channel 0 holds 1, 3, 5, -1 (mean 2); channel 1 holds 0, 0, 2, 2 (mean 1)
    fake = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, -1.0]], [[2.0, 2.0]]]], requires_grad=True)
    value = penalty(fake=fake)
    torch.testing.assert_close(value, torch.tensor(2.0 * ((2 - 0.5) ** 2 + (1 - 0.5) ** 2) / 2))  # 2.5
    value.backward()
    # d/d fake[b, c, ...] = weight · 2 · (mean_c - target) / 2 channels / 4 values per channel
    expected = torch.empty_like(fake)
    expected[:, 0], expected[:, 1] = 2 * 2 * 1.5 / 2 / 4, 2 * 2 * 0.5 / 2 / 4
    torch.testing.assert_close(fake.grad, expected)


def test_image_mean_penalty_declares_the_generator_and_its_need():
    import inspect

    assert ImageMeanPenalty.network == "generator"
    params = inspect.signature(ImageMeanPenalty.__call__).parameters
    assert [(p.name, p.kind) for p in list(params.values())[1:]] == [("fake", inspect.Parameter.KEYWORD_ONLY)]
    assert ImageMeanPenalty()(fake=torch.zeros(2, 3, 4, 4)) == 0
    with pytest.raises(ValueError):
        ImageMeanPenalty(weight=-1.0)


# -- InstanceNoise and LogitTracker ---------------------------------------------


class _Scored:
    """Stands in for ganforge's DiscriminatorOutput: the tracker reads ``logit`` only."""

    def __init__(self, *logits: float) -> None:
        self.logit = torch.tensor(logits)


@pytest.mark.parametrize("tracked, std", [(-3.0, 0.0), (0.0, 0.0), (2.0, 0.2), (10.0, 0.5)])
def test_instance_noise_std_follows_the_tracked_logit(tracked, std):
    layer = InstanceNoise(strength=0.1, max_std=0.5, in_channels=3).train()
    layer.tracked_logit.fill_(tracked)
    torch.testing.assert_close(layer.std, torch.tensor(std))
    x = torch.randn(2, 3, 4, 4)
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    torch.testing.assert_close(out, x + std * torch.randn(2, 3, 4, 4))
    assert layer.logged_scalars()["std"] == layer.std


def test_instance_noise_draws_the_same_stream_whatever_its_std():
    layer = InstanceNoise(in_channels=1).train()
    torch.manual_seed(0)
    layer(torch.zeros(2, 1, 3, 3))  # std 0: nothing added, yet the noise is drawn
    after_off = torch.rand(1)
    layer.tracked_logit.fill_(1.0)
    torch.manual_seed(0)
    layer(torch.zeros(2, 1, 3, 3))
    assert torch.equal(after_off, torch.rand(1))


def test_instance_noise_is_the_identity_in_eval_mode_and_runs_on_meta():
    layer = InstanceNoise(in_channels=2).eval()
    layer.tracked_logit.fill_(100.0)
    x = torch.randn(1, 2, 3, 3)
    assert torch.equal(layer(x), x)
    with torch.device("meta"):
        assert InstanceNoise(in_channels=2).train()(torch.empty(4, 2, 8, 8)).shape == (4, 2, 8, 8)
    with pytest.raises(ValueError, match="expects images"):
        layer(torch.zeros(1, 3, 3, 3))
    assert InstanceNoise.requires == ("controller:logit_tracker",)


def test_logit_tracker_bias_corrected_running_mean_by_hand():
    tracker, layer = LogitTracker(momentum=0.5), InstanceNoise(in_channels=1)
    tracker.attach(modules=[layer])
    tracker.feedback(step=0, real=_Scored(1.0, 3.0))   # batch mean 2: ema 0.5·0 + 0.5·2 = 1, / (1 - 0.5) = 2
    assert tracker.mean == 2.0 and layer.tracked_logit.item() == 2.0
    tracker.feedback(step=1, real=_Scored(4.0))        # ema 0.5·1 + 0.5·4 = 2.5, / (1 - 0.25) = 10/3
    assert tracker.mean == pytest.approx((0.5 * 2 + 4) / 1.5)
    torch.testing.assert_close(layer.tracked_logit, torch.tensor(10 / 3))


def test_logit_tracker_writes_every_interval_steps():
    tracker, layer = LogitTracker(momentum=0.0, interval=2), InstanceNoise(in_channels=1)
    tracker.attach(modules=[layer])
    tracker.feedback(step=0, real=_Scored(5.0))
    assert layer.tracked_logit.item() == 0.0          # not yet: writes after steps 1, 3, ...
    tracker.feedback(step=1, real=_Scored(3.0))
    assert layer.tracked_logit.item() == 3.0          # momentum 0: the last batch's mean
    tracker.feedback(step=2, real=_Scored(-1.0))
    assert layer.tracked_logit.item() == 3.0 and tracker.mean == -1.0


def test_logit_tracker_resumes_exactly_mid_interval():
    batches = [_Scored(0.3, 1.7), _Scored(-0.2), _Scored(2.9, 0.1, 1.0), _Scored(0.7), _Scored(-1.3, 4.4)]
    straight, straight_layer = LogitTracker(momentum=0.8, interval=2), InstanceNoise(in_channels=1)
    straight.attach(modules=[straight_layer])
    for step, real in enumerate(batches[:3]):
        straight.feedback(step=step, real=real)
    state = straight.state_dict()
    assert all(type(v) in (float, int) for v in state.values())  # plain numbers: exact in a checkpoint
    resumed, resumed_layer = LogitTracker(momentum=0.8, interval=2), InstanceNoise(in_channels=1)
    resumed.attach(modules=[resumed_layer])
    resumed.load_state_dict(dict(state))
    assert torch.equal(resumed_layer.tracked_logit, straight_layer.tracked_logit)  # the value of step 1's write
    for step, real in enumerate(batches[3:], start=3):
        straight.feedback(step=step, real=real)
        resumed.feedback(step=step, real=real)
        assert resumed.state_dict() == straight.state_dict()
        assert torch.equal(resumed_layer.tracked_logit, straight_layer.tracked_logit)


def test_logit_tracker_refuses_modules_without_the_buffer_and_bad_settings():
    with pytest.raises(TypeError, match="tracked_logit"):
        LogitTracker().attach(modules=[torch.nn.Linear(1, 1)])
    for bad in ({"momentum": 1.0}, {"momentum": -0.1}, {"interval": 0}):
        with pytest.raises(ValueError):
            LogitTracker(**bad)
    LogitTracker().feedback(step=0, real=_Scored(1.0))  # attached to nothing: it only tracks


# -- LayerCodes and FiLM --------------------------------------------------------


def test_layer_codes_by_hand():
    codes = LayerCodes(latent_dim=3, consumers={"code": 2}, dim=2)
    with torch.no_grad():
        codes.linear.weight.copy_(torch.arange(12.0).view(4, 3))
        codes.linear.bias.zero_()
    out = codes(z=torch.tensor([[1.0, 2.0, 3.0]]))
    assert set(out) == set(LayerCodes.provides) == {"code"} and LayerCodes.provides["code"] == "per_layer"
    # rows of W·z: 0+2+6, 3+8+15, 6+14+24, 9+20+33; consumer i reads [:, i]
    torch.testing.assert_close(out["code"], torch.tensor([[[8.0, 26.0], [44.0, 62.0]]]))


def test_layer_codes_needs_a_consumer():
    with pytest.raises(ValueError, match="no generator component reads it"):
        LayerCodes(latent_dim=4, consumers={"code": 0})
    with pytest.raises(ValueError):
        LayerCodes(latent_dim=4, consumers={"code": 1}, dim=0)


def test_film_by_hand():
    film = FiLM(in_channels=2, code_dim=1)
    with torch.no_grad():
        film.modulation.weight.copy_(torch.tensor([[1.0], [0.0], [2.0], [-1.0]]))  # γ = [c, 0], β = [2c, -c]
        film.modulation.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    out = film(x, code=torch.tensor([[0.5]]))  # γ = [0.5, 0], β = [1, -0.5]
    torch.testing.assert_close(out, torch.tensor([[[[1 * 1.5 + 1, 2 * 1.5 + 1]], [[3 - 0.5, 4 - 0.5]]]]))


def test_film_needs_its_code():
    with pytest.raises(ValueError, match="layer_codes"):
        FiLM(in_channels=2)  # code_dim 0: no producer gives 'code'
    with pytest.raises(ValueError, match="code=None"):
        FiLM(in_channels=2, code_dim=3)(torch.zeros(1, 2, 2, 2))


def test_layer_codes_condition_film_layers_through_gradients():
    codes = LayerCodes(latent_dim=4, consumers={"code": 2}, dim=3)
    films = [FiLM(in_channels=2, code_dim=3), FiLM(in_channels=2, code_dim=3)]
    entry = codes(z=torch.randn(5, 4))["code"]
    x = torch.randn(5, 2, 2, 2)
    for i, film in enumerate(films):
        x = film(x, code=entry[:, i])
    x.square().mean().backward()
    assert codes.linear.weight.grad is not None and codes.linear.weight.grad.abs().sum() > 0


# -- packaging and the ganforge contract -----------------------------------------


def _declared_entry_points() -> list[metadata.EntryPoint]:
    with open(PLUGIN_ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["dependencies"] == ["torch>=2.3"]
    group = project["entry-points"]["ganforge.plugins"]
    return [metadata.EntryPoint(name=n, value=v, group="ganforge.plugins") for n, v in group.items()]


def test_entry_points_resolve():
    eps = {ep.name: ep.load() for ep in _declared_entry_points()}
    assert eps == EXPECTED_ENTRY_POINTS


EXPECTED_ENTRY_POINTS = {
    "layer.coord_conv": CoordConv,
    "loss.relativistic_hinge": RelativisticHinge,
    "head.feature_output": FeatureOutput,
    "loss.hinge_feature_matching": HingeFeatureMatching,
    "regularizer.image_mean": ImageMeanPenalty,
    "controller.logit_tracker": LogitTracker,
    "layer.instance_noise": InstanceNoise,
    "context.layer_codes": LayerCodes,
    "layer.film": FiLM,
}


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
    assert sorted(f"{c.kind}.{c.name}" for c in registry.list()) == sorted(EXPECTED_ENTRY_POINTS)


def test_new_contract_components_meet_the_ganforge_contract():
    """Each new contract, through ganforge's own checks and the settings it derives from the annotations."""
    from ganforge.contracts import capability, check_contract, check_instance
    from ganforge.plugins import PluginIndex
    from ganforge.registry import Registry

    registry = Registry(plugin_source=PluginIndex.from_entry_points(_declared_entry_points()))
    for name, obj in EXPECTED_ENTRY_POINTS.items():
        kind, _, short = name.partition(".")
        component = registry.get(kind, short)
        assert component.obj is obj and component.summary
        check_contract(kind, obj)

    head = registry.get("head", "feature_output").build({}, {"in_channels": 4, "in_size": 2})
    check_instance("head", head)
    assert capability(head, "outputs", kind="head") == ("features",)

    loss = registry.get("loss", "hinge_feature_matching").build({"feature_weight": 0.25})
    check_instance("loss", loss)
    assert capability(loss, "needs_outputs", kind="loss") == ("features",)
    assert capability(loss, "generator_needs_real", kind="loss") is True

    regularizer = registry.get("regularizer", "image_mean").build({})
    check_instance("regularizer", regularizer)
    assert capability(regularizer, "network", kind="regularizer") == "generator"

    tracker_component = registry.get("controller", "logit_tracker")
    assert tracker_component.validate({}) == {"momentum": 0.9, "interval": 1}
    tracker = tracker_component.build({})
    check_instance("controller", tracker)
    layer = registry.get("layer", "instance_noise").build({}, {"in_channels": 3, "in_size": 8})
    assert capability(layer, "requires", kind="layer") == ("controller:logit_tracker",)

    producer_component = registry.get("context", "layer_codes")
    assert producer_component.context_params == {"latent_dim", "consumers"}
    producer = producer_component.build({"dim": 5}, {"latent_dim": 6, "num_classes": 0, "consumers": {"code": 3}})
    check_instance("context", producer)
    assert producer(z=torch.zeros(2, 6))["code"].shape == (2, 3, 5)

    film = registry.get("layer", "film")
    assert film.entry_dims(["code", "style"]) == ["code"]  # it consumes 'code' (it takes code_dim)
    built = film.build({}, {"in_channels": 4, "in_size": 8, "code_dim": 5})
    assert built.code_dim == 5 and built(torch.zeros(2, 4, 8, 8), code=torch.zeros(2, 5)).shape == (2, 4, 8, 8)
