"""The Python API and export (issue 12 §1): ``ganforge.load``, ``LoadedGenerator.generate``, ``ganforge export``.

The cheapest generator is the format-2 fixture (no EMA); one module-wide 2-step tiny run with an
EMA update rule covers the EMA path and the export round trip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file
from support import ROOT, TINY, assert_clean_failure

import ganforge
from ganforge.cli import cli
from ganforge.errors import GanforgeError

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-format2" / "step-000000001.pt"
SHRINK = ["generator.stem.channels=8", "generator.blocks.0.channels=8", "generator.blocks.1.channels=8",
          "discriminator.blocks.0.channels=8", "discriminator.blocks.2.channels=8",
          "discriminator.blocks.4.channels=8", "train.batch_size=4", "data.size=16", "train.log_every=1",
          "train.sample_every=1000", "train.checkpoint_every=1", "update_rule.2={type: ema, decay: 0.5, start: 0}"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    """A 2-step tiny run with an EMA generator, narrow layers."""
    run = tmp_path_factory.mktemp("api") / "run"
    args = ["train", str(TINY), "--out", str(run), "--steps", "2", "--device", "cpu", "--seed", "0"]
    for override in SHRINK:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return run


@pytest.fixture(scope="module")
def exported(ema_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.safetensors"
    result = CliRunner().invoke(cli, ["export", str(ema_run), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "EMA generator of step 2" in result.output
    return out


def test_import_ganforge_does_not_import_torch():
    code = "import ganforge, sys; print('torch' in sys.modules, callable(ganforge.load))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


# -- load and generate ---------------------------------------------------------------------------
def test_load_a_checkpoint_gives_a_generator_ready_to_sample():
    g = ganforge.load(FIXTURE, device="cpu")
    assert (g.latent_dim, g.num_classes, g.resolution, g.channels) == (32, 4, 16, 3)
    assert g.step == 1 and not g.uses_ema and g.source == FIXTURE and g.device == torch.device("cpu")
    assert g.blueprint.name == "tiny" and not g.network.training
    assert "LoadedGenerator('tiny', raw, step 1" in repr(g)


def test_generate_shape_range_and_determinism_by_seed():
    from ganforge.engine.restore import restore
    from ganforge.sampling.generation import generate

    g = ganforge.load(FIXTURE, device="cpu")
    images = g.generate(6, seed=3)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.float32
    assert images.abs().max() <= 1 and torch.isfinite(images).all()
    assert torch.equal(images, g.generate(6, seed=3))
    assert not torch.equal(images, g.generate(6, seed=4))
    assert g.generate(3, seed=3, truncation=0.5).shape == (3, 3, 16, 16)
    # the images `ganforge sample --seed 3` draws
    run = restore(FIXTURE)
    cli_images = torch.cat(list(generate(run.generator, n=6, latent_dim=32, num_classes=4, seed=3)))
    assert torch.equal(images, cli_images)


def test_generate_honours_classes():
    g = ganforge.load(FIXTURE, device="cpu")
    seen: list[torch.Tensor] = []
    g.network.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    one = g.generate(5, classes=2, seed=1)
    assert seen[-1].tolist() == [2] * 5
    listed = g.generate(5, classes=[2, 2, 2, 2, 2], seed=1)
    assert torch.equal(one, listed)  # a list uses the latents an int would
    g.generate(4, classes=torch.tensor([3, 0, 1, 2]), seed=1)
    assert seen[-1].tolist() == [3, 0, 1, 2]
    g.generate(70, classes=list(range(4)) * 17 + [1, 1], seed=1)  # two batches: labels follow the images
    assert torch.cat(seen[-2:]).tolist() == list(range(4)) * 17 + [1, 1]
    g.generate(64, seed=1)
    assert set(seen[-1].tolist()) <= {0, 1, 2, 3}
    for bad, words in [(4, "0..3"), ([0, 1], "2 classes given for 3"), ([0.5, 1, 2], "integers"),
                       (True, "an int")]:
        with pytest.raises(GanforgeError, match=words.replace(".", r"\.")):
            g.generate(3, classes=bad)
    with pytest.raises(GanforgeError, match="positive"):
        g.generate(0)


def test_load_prefers_the_ema_generator(ema_run):
    from ganforge.engine.restore import restore

    ema = ganforge.load(ema_run, device="cpu")
    raw = ganforge.load(ema_run, ema=False, device="cpu")
    assert ema.uses_ema and not raw.uses_ema and ema.step == raw.step == 2
    assert ema.source.name == "step-000000002.pt"
    assert not torch.equal(ema.generate(4, seed=0), raw.generate(4, seed=0))
    # the EMA copy with its own converged u/v, as `restore` (and so `ganforge sample`) gives it
    restored = restore(ema_run)
    for (name, mine), (_, theirs) in zip(ema.network.state_dict().items(), restored.generator.state_dict().items()):
        assert torch.equal(mine, theirs), name


# -- export ----------------------------------------------------------------------------------------
def test_export_holds_the_generator_and_its_blueprint_only(ema_run, exported):
    from ganforge.engine.restore import restore

    restored = restore(ema_run)
    with safe_open(str(exported), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
        tensors = {name: handle.get_tensor(name) for name in keys}
    assert keys == set(restored.generator.state_dict())
    assert not any(word in key for key in keys for word in ("optim", "discriminator", "rng", "exp_avg"))
    assert metadata["format"] == "ganforge-generator" and metadata["format_version"] == "1"
    assert metadata["generator"] == "ema" and metadata["step"] == "2"
    assert json.loads(metadata["blueprint"]) == restored.record.blueprint
    for name, value in restored.generator.state_dict().items():  # the EMA copy's converged u/v included
        assert torch.equal(tensors[name], value), name


def test_load_of_an_export_generates_what_the_checkpoint_does(ema_run, exported, tmp_path):
    from_export = ganforge.load(exported, device="cpu")
    from_run = ganforge.load(ema_run, device="cpu")
    assert from_export.uses_ema and from_export.step == 2 and from_export.latent_dim == from_run.latent_dim
    assert torch.equal(from_export.generate(8, seed=5), from_run.generate(8, seed=5))
    assert torch.equal(from_export.generate(4, classes=1, seed=2), from_run.generate(4, classes=1, seed=2))

    raw = tmp_path / "raw.safetensors"
    result = CliRunner().invoke(cli, ["export", str(ema_run), "--out", str(raw), "--raw"])
    assert result.exit_code == 0, result.stderr
    loaded = ganforge.load(raw, device="cpu")
    assert not loaded.uses_ema
    assert torch.equal(loaded.generate(4, seed=5), ganforge.load(ema_run, ema=False, device="cpu").generate(4, seed=5))


def test_sample_accepts_an_export(exported, tmp_path):
    grid = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, ["sample", str(exported), "--n", "4", "--out", str(grid), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert grid.is_file() and "EMA generator" in result.output and "step 2" in result.output
    raw = CliRunner().invoke(cli, ["sample", str(exported), "--n", "2", "--out", str(grid), "--raw"])
    assert raw.exit_code == 0, raw.stderr
    assert "holds the EMA generator only" in raw.stderr and len(raw.stderr.splitlines()) == 1


def test_bad_or_foreign_safetensors_is_one_line(exported, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 3 + b"not safetensors at all")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.ones(2, 2)}, str(foreign), metadata={"format": "pt"})
    tampered = tmp_path / "tampered.safetensors"
    with safe_open(str(exported), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    name = next(n for n in sorted(tensors) if tensors[n].is_floating_point())
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(tampered), metadata=metadata)
    runner = CliRunner()
    for path, words in [(garbage, "not a readable safetensors file"), (foreign, "not a ganforge export"),
                        (tampered, "checksum mismatch"), (tmp_path / "missing.safetensors", "no such export")]:
        assert_clean_failure(runner.invoke(cli, ["sample", str(path), "--out", str(tmp_path / "x.png")]),
                             mentions=(path.name, words))
        with pytest.raises(GanforgeError, match=words):
            ganforge.load(path, device="cpu")
    assert_clean_failure(runner.invoke(cli, ["export", str(FIXTURE), "--out", str(tmp_path / "model.pt")]),
                         mentions=(".safetensors",))
    assert_clean_failure(runner.invoke(cli, ["export", str(tmp_path / "nothing"), "--out", str(foreign)]),
                         mentions=("nothing",))
