"""The checkpoint format lasts: a typed record, migrations from older formats, renamed components.

``tests/fixtures/checkpoint-format2/`` holds a checkpoint written by ganforge at format 2 (see its
README); every later version must still restore it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from support import assert_clean_failure

from ganforge.engine import checkpoints
from ganforge.engine.checkpoints import (
    FORMAT,
    CheckpointRecord,
    load_checkpoint,
    migrate,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from ganforge.errors import CollisionError, GanforgeError, RegistryError
from ganforge.registry import Registry

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-format2" / "step-000000001.pt"


def sample_batch(run, n: int = 4) -> torch.Tensor:
    from ganforge.sampling.generation import generate

    bp = run.loaded.blueprint
    with torch.no_grad():
        return torch.cat(list(generate(run.generator, n=n, latent_dim=bp.generator.latent_dim,
                                       num_classes=bp.data.num_classes, seed=0)))


def format1_dict() -> dict:
    """The fixture as the first ganforge (format 1) wrote it: one process's RNG as a dict of tensors,
    no ``best_fid``/``blueprint_file``, no checksum trailer."""
    state = torch.load(FIXTURE, weights_only=True)
    rng = state["rng"][0]
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    old_rng = {"python": rng["python"],
               "numpy": [name, torch.tensor(keys, dtype=torch.int64), pos, has_gauss, gauss],
               "torch": torch.tensor(rng["torch"], dtype=torch.uint8),
               "cuda": [],
               "noise": torch.tensor(rng["noise"], dtype=torch.uint8)}
    for key in ("best_fid", "blueprint_file"):
        del state[key]
    return {**state, "rng": old_rng, "format": 1}


# -- the fixture from format 2 --------------------------------------------------------------------
def test_fixture_is_small_and_format_2():
    assert FIXTURE.stat().st_size < 300_000
    assert checkpoints.verify_checksum(FIXTURE)
    assert torch.load(FIXTURE, weights_only=True)["format"] == 2


def test_format2_fixture_reads_as_a_record_and_restores(tmp_path):
    from ganforge.engine.restore import restore

    record = read_checkpoint(FIXTURE)
    assert isinstance(record, CheckpointRecord) and record.format == FORMAT
    assert record.step == 1 and record.ema is None and len(record.rng) == 1
    assert record.data is not None and record.g_optimizer and record.d_optimizer
    assert record.blueprint["name"] == "tiny" and record.extra == {}

    run = restore(FIXTURE)
    assert run.step == 1 and not run.uses_ema and run.record.step == 1
    images = sample_batch(run)
    assert images.shape == (4, 3, 16, 16) and torch.isfinite(images).all()
    assert images.abs().max() <= 1
    run.discriminator()  # D's weights load too


def test_format2_fixture_samples_from_the_cli(cli, tmp_path):
    run_dir = tmp_path / "run" / "checkpoints"
    run_dir.mkdir(parents=True)
    shutil.copy(FIXTURE, run_dir)
    result = cli("sample", tmp_path / "run", "--n", "4", "--device", "cpu", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_record_round_trips_through_a_file(tmp_path):
    record = read_checkpoint(FIXTURE)
    record.extra["plugin_note"] = "kept"
    written = write_checkpoint(tmp_path, record, keep=2)
    again = read_checkpoint(written)
    assert again.extra == {"plugin_note": "kept"} and again.step == record.step
    assert again.blueprint == record.blueprint and again.rng == record.rng
    assert all(torch.equal(again.generator[k], v) for k, v in record.generator.items())
    with pytest.raises(ValueError, match="'generator'"):
        CheckpointRecord.from_dict({"step": 1, "discriminator": {}, "blueprint": {}})


# -- migrations -----------------------------------------------------------------------------------
def test_format1_checkpoint_migrates_and_restores(tmp_path):
    from ganforge.engine.restore import restore

    old = tmp_path / "old.pt"
    torch.save(format1_dict(), old)  # format 1: no trailer
    warnings: list[str] = []
    record = read_checkpoint(old, warn=warnings.append)
    assert len(warnings) == 1 and "no checksum" in warnings[0]
    assert record.format == FORMAT and record.best_fid is None and record.blueprint_file is None
    new = read_checkpoint(FIXTURE)
    assert record.rng == new.rng, "the old RNG dict of tensors becomes the per-rank list of plain lists"
    assert record.images_seen == new.images_seen

    run = restore(old, warn=warnings.append)
    assert torch.isfinite(sample_batch(run)).all()


def test_training_resumes_from_a_format1_checkpoint(cli, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    state = format1_dict()
    torch.save(state, folder / "step-000000001.pt")
    # the run's own blueprint, as stored in the checkpoint (tiny.yaml has changed since)
    blueprint = tmp_path / "run.yaml"
    blueprint.write_text(yaml.safe_dump(state["blueprint"]))
    result = cli("train", blueprint, "--steps", "2", "--resume", "--out", tmp_path / "run", "--device", "cpu",
                 "--seed", "0")
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "at step 1" in result.output
    assert read_checkpoint(folder / "step-000000002.pt").step == 2


def test_migrations_chain_in_order(monkeypatch):
    """A file two versions old passes through every step, each once, oldest first."""
    seen: list[int] = []

    def step(version):
        def upgrade(state):
            seen.append(version)
            return {**state, f"from_{version}": True}
        return upgrade

    monkeypatch.setattr(checkpoints, "FORMAT", 4)
    monkeypatch.setattr(checkpoints, "MIGRATIONS", {1: checkpoints.MIGRATIONS[1], 2: step(2), 3: step(3)})
    out = migrate({**format1_dict()})
    assert seen == [2, 3] and out["format"] == 4 and out["from_2"] and out["from_3"]
    assert isinstance(out["rng"], list), "format 1 → 2 ran first"
    assert migrate({"format": 4, "x": 1}) == {"format": 4, "x": 1}


@pytest.mark.parametrize("version", [FORMAT + 1, 0, "2", None])
def test_unknown_or_future_format_is_a_clear_error(tmp_path, monkeypatch, version):
    path = tmp_path / "step-000000001.pt"
    monkeypatch.setattr(checkpoints, "FORMAT", version)  # written (with a valid trailer) as that version
    save_checkpoint(tmp_path, 1, {"generator": {}, "discriminator": {}, "blueprint": {}}, keep=1)
    monkeypatch.undo()
    with pytest.raises(GanforgeError, match="newer than this ganforge" if version == FORMAT + 1
                       else "unknown checkpoint format"):
        load_checkpoint(path)


def test_future_format_ends_sample_with_one_line(cli, tmp_path, monkeypatch):
    state = torch.load(FIXTURE, weights_only=True)
    folder = tmp_path / "run" / "checkpoints"
    monkeypatch.setattr(checkpoints, "FORMAT", FORMAT + 1)
    save_checkpoint(folder, 1, state, keep=1)
    monkeypatch.undo()
    result = cli("sample", folder / "step-000000001.pt", "--n", "1", "--device", "cpu",
                 "--out", tmp_path / "grid.png")
    assert_clean_failure(result, mentions=(f"format {FORMAT + 1} is newer", "upgrade ganforge"))


# -- renamed components and settings ----------------------------------------------------------------
class Widen:
    """Toy layer, once called ``broaden`` with a setting ``width``."""

    def __init__(self, *, in_channels: int, channels: int = 8) -> None:
        self.in_channels, self.channels = in_channels, channels


def test_alias_finds_the_renamed_component_with_one_warning(capsys):
    registry = Registry()
    registry.add("layer", "widen", Widen, aliases=("broaden",), renamed_settings={"width": "channels"})
    component = registry.get("layer", "broaden")
    assert component is registry.get("layer", "widen")
    assert registry.find("broaden", ["layer", "block"]) is component
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "broaden → widen" in lines[0] and lines[0].startswith("warning:")

    built = component.build({"width": 4}, {"in_channels": 3})
    assert built.channels == 4
    component.validate({"width": 5})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "width → channels" in lines[0] and "'widen'" in lines[0]
    with pytest.raises(RegistryError, match="give only 'channels'"):
        component.validate({"width": 4, "channels": 4})
    assert [c.name for c in registry.list("layer")] == ["widen"], "old names are not listed"


def test_alias_never_shadows_and_cannot_be_reassigned():
    class Broaden(Widen):
        """A new component that took the old name."""

    registry = Registry()
    registry.add("layer", "widen", Widen, aliases=("broaden",))
    registry.add("layer", "broaden", Broaden)
    assert registry.get("layer", "broaden").obj is Broaden, "a registered name wins over an old name"
    with pytest.raises(CollisionError, match="already an old name"):
        registry.deprecate("layer", "broaden", "other")
    with pytest.raises(RegistryError, match="invalid component name"):
        registry.deprecate("layer", "Bad-Name", "widen")


def test_register_decorator_takes_aliases(monkeypatch, capsys):
    from ganforge import registry as registry_module

    monkeypatch.setattr(registry_module, "_declared", [])
    registry_module.register("layer", "widen", aliases=("broaden",), renamed_settings={"width": "channels"})(Widen)
    registry = Registry(include_all_declared=True)
    assert registry.get("layer", "broaden").validate({"width": 2}) == {"channels": 2}
    assert "broaden → widen" in capsys.readouterr().err


def test_deprecation_table(monkeypatch, capsys):
    from ganforge import registry as registry_module

    registry = Registry()
    registry.add("layer", "widen", Widen)
    monkeypatch.setitem(registry_module.DEPRECATED_NAMES, ("layer", "broaden"), "widen")
    assert registry.get("layer", "broaden").obj is Widen
    assert "broaden → widen" in capsys.readouterr().err


def test_old_run_with_renamed_component_and_setting_still_restores(tmp_path, monkeypatch, capsys):
    """A checkpoint whose embedded blueprint names a head and a setting by their former names."""
    from ganforge.engine.restore import restore
    from ganforge.registry import default_registry

    registry = default_registry()
    head = registry.get("head", "image_output")
    monkeypatch.setitem(registry._aliases, ("head", "rgb_output"), "image_output")
    monkeypatch.setattr(head, "renamed_settings", {"bn_mom": "bn_momentum"})
    monkeypatch.setattr(head, "_warned", set())

    record = read_checkpoint(FIXTURE)
    settings = dict(record.blueprint["generator"]["head"])
    assert settings["type"] == "image_output"
    settings["type"] = "rgb_output"
    settings["bn_mom"] = settings.pop("bn_momentum")
    record.blueprint["generator"]["head"] = settings
    written = write_checkpoint(tmp_path / "checkpoints", record, keep=1)
    capsys.readouterr()

    run = restore(written)
    assert torch.isfinite(sample_batch(run)).all()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert any("rgb_output → image_output" in line for line in lines), err
    assert any("bn_mom → bn_momentum" in line for line in lines), err
    assert len(lines) == 2, "one line per renamed thing"
