"""ganforge attention: SAGAN-style attention overlays from a run, and the query → map arithmetic."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ganforge.commands.attention_maps import (attention_figure, capture_attention, default_output, default_points,
                                     find_attention_layers, parse_points, query_map)
from ganforge.cli import cli as group
from ganforge.errors import GanforgeError
from ganforge.components.layers.attention import SelfAttention

TINY = Path(__file__).resolve().parents[1] / "blueprints" / "tiny.yaml"
SMALL = ["--steps", "1", "--device", "cpu", "--set", "train.batch_size=4", "--set", "data.size=16",
         "--set", "train.log_every=1"]


def invoke(*args):
    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attention") / "run"
    result = invoke("train", TINY, "--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def restored(run):
    from ganforge.engine.restore import restore

    return restore(run)


# -- query_map ------------------------------------------------------------------------------------
def test_one_hot_row_lights_exactly_the_upsampled_key_cell():
    # 4×4 queries, pooled 2×2 keys, 16×16 image. Row q attends only to key q % 4.
    attention = torch.zeros(16, 4)
    attention[torch.arange(16), torch.arange(16) % 4] = 1.0
    # pixel (5, 9) → query cell (5·4//16, 9·4//16) = (1, 2) → q = 6 → key 2 = key cell (1, 0)
    heat = query_map(attention, (5, 9), 16, (4, 4), (2, 2))
    expected = torch.zeros(16, 16)
    expected[8:16, 0:8] = 1.0
    assert heat.shape == (16, 16)
    assert torch.equal(heat, expected)


def test_unpooled_keys_and_corner_points():
    attention = torch.zeros(64, 64)
    attention[torch.arange(64), 63 - torch.arange(64)] = 1.0  # each query looks at its mirror position
    heat = query_map(attention, (0, 0), 32, (8, 8), (8, 8))  # q = 0 → key 63 = cell (7, 7)
    assert heat[28:, 28:].eq(1).all() and heat.sum() == 16
    heat = query_map(attention, (31, 31), 32, (8, 8), (8, 8))  # q = 63 → key 0 = cell (0, 0)
    assert heat[:4, :4].eq(1).all() and heat.sum() == 16


@settings(max_examples=25, deadline=None)
@given(h=st.sampled_from([2, 4, 8]), pooled=st.booleans(), scale=st.sampled_from([1, 2, 4]),
       data=st.data())
def test_map_is_the_queried_row_blown_up(h, pooled, scale, data):
    key = h // 2 if pooled else h
    size = h * scale
    attention = torch.rand(h * h, key * key).softmax(-1)
    r = data.draw(st.integers(0, size - 1))
    c = data.draw(st.integers(0, size - 1))
    heat = query_map(attention, (r, c), size, (h, h), (key, key))
    row = attention[(r // scale) * h + c // scale].reshape(key, key)
    block = size // key
    assert torch.allclose(heat, row.repeat_interleave(block, 0).repeat_interleave(block, 1))


def test_query_map_rejects_mismatched_shapes_and_outside_points():
    with pytest.raises(ValueError, match="does not match"):
        query_map(torch.zeros(16, 16), (0, 0), 16, (4, 4), (2, 2))
    with pytest.raises(ValueError, match="outside"):
        query_map(torch.zeros(16, 4), (16, 0), 16, (4, 4), (2, 2))


def test_parse_points():
    assert parse_points("1,2; 3 ,4;") == [(1, 2), (3, 4)]
    for bad in ("1", "1,2,3", "a,b", ";"):
        with pytest.raises(GanforgeError, match="--points"):
            parse_points(bad)
    assert default_points(16) == [(4, 4), (6, 12), (12, 6)]


# -- capture ------------------------------------------------------------------------------------
class Wrapped(nn.Module):
    """An architecture ganforge did not assemble: attention nested inside a block."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 8, 1), SelfAttention(in_channels=8, in_size=4, pooled=False,
                                                                     spectral_norm=False))
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x, labels=None):
        return self.head(self.block(x))


def test_capture_finds_nested_attention_by_duck_typing():
    network = Wrapped().eval()
    layers = find_attention_layers(network)
    assert [layer.path for layer in layers] == ["block.1"]
    images, captured = capture_attention(network, torch.randn(2, 3, 4, 4), None, layers)
    assert images.shape == (2, 3, 4, 4)
    (entry,) = captured
    assert entry.grid == (4, 4) and entry.key_grid == (4, 4)
    assert entry.attention.shape == (2, 16, 16)
    assert torch.allclose(entry.attention.sum(-1), torch.ones(2, 16))
    assert not network.block[1]._forward_pre_hooks  # hooks removed


def test_capture_from_a_trained_generator(restored):
    layers = find_attention_layers(restored.generator)
    assert [layer.label for layer in layers] == ["self_attention (layers.2)"]
    z = torch.randn(3, restored.loaded.blueprint.generator.latent_dim)
    images, (entry,) = capture_attention(restored.generator, z, torch.tensor([0, 1, 2]), layers)
    assert images.shape == (3, 3, 16, 16)
    assert entry.grid == (8, 8) and entry.key_grid == (4, 4)  # pooled keys
    assert torch.allclose(entry.attention.sum(-1), torch.ones(3, 64), atol=1e-5)


def test_attention_figure_library_call(restored, tmp_path):
    out = attention_figure(restored, points=[(0, 0), (15, 15)], class_index=2, seed=1, n=2, out=tmp_path / "a.png")
    width, height = png_size(out)
    assert width > height  # 2 rows, 1 + 2 points × 1 layer = 3 columns
    assert 300 <= height <= 800 and 450 <= width <= 1200


# -- command ------------------------------------------------------------------------------------
def test_cli_attention_default_writes_figure_and_gamma(run):
    result = invoke("attention", run)
    assert result.exit_code == 0, result.output
    assert [Path(line) for line in result.stdout.splitlines()] == [run / "attention.png",
                                                                    run / "plots" / "gamma.png"]
    width, height = png_size(run / "attention.png")
    # 4 rows of images; columns: the image + 3 default points × 1 attention layer
    assert 600 <= width <= 1500 and 600 <= height <= 1500
    assert png_size(run / "plots" / "gamma.png")  # where `ganforge plot` writes it


def test_default_output_next_to_a_checkpoint_file(run, restored):
    (checkpoint,) = sorted((run / "checkpoints").glob("step-*.pt"))
    assert restored.checkpoint == checkpoint
    assert default_output(restored, run) == run / "attention.png"
    assert default_output(restored, checkpoint) == checkpoint.with_name(checkpoint.stem + "-attention.png")


@pytest.mark.parametrize("kwargs, message", [
    (dict(points=[(4, 4), (16, 2)]), "(16,2) is outside the 16×16 generated image"),
    (dict(points=[(-1, 3)]), "(-1,3) is outside"),
    (dict(class_index=4), "--class 4 is out of range"),
])
def test_attention_figure_rejects_bad_input(restored, tmp_path, kwargs, message):
    with pytest.raises(GanforgeError) as raised:
        attention_figure(restored, **{"points": None, "class_index": None, "seed": 0, "n": 1,
                                      "out": tmp_path / "x.png", **kwargs})
    assert message in str(raised.value)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--points", "4,4;16,2"], "error: --points: (16,2) is outside the 16×16 generated image"),
    (["--points", "4;5"], "error: --points: '4' is not ROW,COLUMN"),  # fails before loading anything
])
def test_cli_attention_bad_points_exit_2(run, tmp_path, args, message):
    result = invoke("attention", run, *args, "--out", tmp_path / "x.png")
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_cli_attention_without_attention_layers_exits_2(tmp_path):
    out = tmp_path / "plain"
    result = invoke("train", TINY, "--out", out, *SMALL, "--set", "generator.attention=[]")
    assert result.exit_code == 0, result.output
    result = invoke("attention", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: this generator has no attention layers"
    assert not (out / "attention.png").exists()


def test_cli_attention_missing_run_exits_2(tmp_path):
    result = invoke("attention", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "nowhere" in result.stderr
