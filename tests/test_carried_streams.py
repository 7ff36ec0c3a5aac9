"""Carried streams: a component passes a second tensor on to the next one that carries it (StyleGAN2's
skip image), with no feature planes; assembly probes its shape, the network threads it, inspect shows it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from support import TINY


class AddRGB(nn.Module):
    """Up-samples the carried image (when there is one) and adds this block's RGB of x."""

    carries = ("image",)

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.rgb = nn.Conv2d(in_channels, 3, 1)
        self.received: list = []

    def forward(self, x, *, image=None):
        self.received.append(None if image is None else image.clone())
        rgb = self.rgb(x)
        if image is not None:
            rgb = rgb + nn.functional.interpolate(image, size=rgb.shape[-2:], mode="nearest")
        return {"x": x, "image": rgb}


class TakeImage(nn.Module):
    """The last component: the carried image plus this resolution's RGB, as the network's output."""

    carries = ("image",)

    def __init__(self, *, in_channels: int, channels: int = 3) -> None:
        super().__init__()
        self.rgb = nn.Conv2d(in_channels, channels, 1)

    def forward(self, x, *, image=None):
        return (self.rgb(x) + nn.functional.interpolate(image, size=x.shape[-2:], mode="nearest")).tanh()


class BadCarrier(AddRGB):
    def forward(self, x, *, image=None):
        return {"x": x, "pictures": x}


@pytest.fixture
def registry():
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    registry = Registry(builtin_packages=BUILTIN_PACKAGES)
    registry.add("layer", "test_add_rgb", AddRGB, origin="test")
    registry.add("head", "test_take_image", TakeImage, origin="test")
    registry.add("layer", "test_bad_carrier", BadCarrier, origin="test")
    return registry


SKIP = ["generator.attention=[]",
        "generator.blocks=[{type: up_resblock, channels: 16}, {type: test_add_rgb}, {type: up_resblock, channels: 8}]",
        "generator.head={type: test_take_image}", "generator.defaults={}"]


def test_the_stream_is_probed_threaded_and_shown(registry):
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.commands.inspection import describe, format_text
    from ganforge.engine.planning import plan_training

    loaded = load_blueprint(TINY, SKIP)
    assembly = assemble(loaded, registry)
    layers = assembly.generator.layers
    assert layers[2].component == "test_add_rgb" and layers[2].streams == {"image": (3, 8, 8)}
    assert layers[2].output_shape == (16, 8, 8)  # x passes on with its own channels: no planes added
    assert assembly.generator.output_shape == (3, 16, 16)
    assert "(carries image 3×8×8)" in format_text(describe(assembly, plan_training(loaded, registry)))

    network = assembly.generator.build("cpu")
    z = torch.randn(2, loaded.blueprint.generator.latent_dim)
    labels = torch.tensor([0, 1])
    carrier, head = network.layers[2], network.layers[4]
    out = network(z, labels)
    assert carrier.received == [None]  # the first carrier starts the stream
    captured, left = {}, {}
    head.register_forward_hook(lambda m, args, kwargs, output: captured.update(kwargs), with_kwargs=True)
    carrier.register_forward_hook(lambda m, args, output: left.update(output))
    network(z, labels)
    assert torch.equal(captured["image"], left["image"])  # the head got the carrier's image, as it left it
    assert out.shape == (2, 3, 16, 16)


def test_a_carrier_returning_other_keys_is_refused(registry):
    from ganforge.engine.build import build_run
    from ganforge.errors import BlueprintError

    bad = [*SKIP[:1], "generator.blocks=[{type: up_resblock, channels: 16}, {type: test_bad_carrier}, "
           "{type: up_resblock, channels: 8}]", *SKIP[2:]]
    with pytest.raises(BlueprintError, match="carries 'image' and returned the keys"):
        build_run(str(TINY), overrides=bad, registry=registry)


def test_a_stack_with_a_stream_trains(registry, tmp_path):
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process

    trainer = build_trainer(str(TINY), overrides=[*SKIP, "train.batch_size=4", "train.num_workers=0"],
                            placement=place_process("cpu"), out=tmp_path / "run", registry=registry)
    d, g = trainer.train_step()
    assert torch.isfinite(d) and torch.isfinite(g)
    assert trainer.update.generator.layers[4].rgb.weight.grad is not None
