"""``--resume`` from bad checkpoints, and exports with hostile metadata (issue 22): one line, nothing removed.

A CLI matrix: each row damages a copy of one tiny trained run (checkpoints at steps 1 and 2) or one
export of it, runs the command, and checks the outcome with ``assert_clean_failure``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from support import CHECKPOINT_EVERY_STEP, TINY, assert_clean_failure, step_file, train_tiny_two_steps

FAST = CHECKPOINT_EVERY_STEP

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_two_steps(tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def unfinished_only(run: Path) -> None:
    """What a run killed while writing its first checkpoint leaves: a half-written temporary file."""
    first = step_file(run, 1)
    halve(first)
    first.rename(first.with_name(first.name + ".tmp"))
    step_file(run, 2).unlink()


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# -- the newest checkpoint damaged: skipped, named, the previous one used --------------------------------
@pytest.mark.parametrize("damage", [empty, halve, flip_bytes], ids=["0 bytes", "half", "flipped"])
def test_a_damaged_newest_checkpoint_is_one_warning_and_the_previous_one_is_used(cli, run, damage):
    damage(step_file(run, 2))
    result = cli("train", TINY, "--out", run, *FAST, "--steps", "2", "--resume")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "step-000000002.pt" in line and "resumed" not in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(f"warning: skipping unreadable checkpoint {step_file(run, 2)}: ")
    assert warnings[0].endswith("; using step-000000001.pt")
    assert f"resumed from {step_file(run, 1)} at step 1" in result.stderr
    if damage is empty:
        assert "the file is empty (0 bytes)" in warnings[0]


# -- no complete checkpoint: exit 2, one line naming what was found, nothing removed ------------------------
NO_COMPLETE = {
    "every checkpoint empty": (lambda run: (empty(step_file(run, 1)), empty(step_file(run, 2))),
                               ("none of the checkpoints can be read", "step-000000001.pt: the file is empty (0 bytes)",
                                "step-000000002.pt: the file is empty (0 bytes)")),
    "truncated and flipped": (lambda run: (halve(step_file(run, 2)), flip_bytes(step_file(run, 1))),
                              ("none of the checkpoints can be read", "step-000000002.pt: RuntimeError: PytorchStreamReader failed", "checksum mismatch")),
    "unreadable and unfinished": (lambda run: (empty(step_file(run, 2)), unfinished_only_keeping(run)),
                                  ("none of the checkpoints can be read", "step-000000001.pt.tmp: an unfinished write of ")),
}


def unfinished_only_keeping(run: Path) -> None:
    """A half-written temporary file beside the (damaged) step-2 checkpoint."""
    first = step_file(run, 1)
    halve(first)
    first.rename(first.with_name(first.name + ".tmp"))


@pytest.mark.parametrize("case", list(NO_COMPLETE))
def test_resume_without_a_complete_checkpoint_is_one_line_and_removes_nothing(cli, run, case):
    damage, words = NO_COMPLETE[case]
    damage(run)
    before = files_of(run / "checkpoints")
    result = cli("train", TINY, "--out", run, *FAST, "--steps", "4", "--resume")
    line = assert_clean_failure(result, mentions=(f"no complete checkpoint in {run / 'checkpoints'}", *words,
                                                  "nothing was removed"))
    assert len(line) < 1200, line
    assert files_of(run / "checkpoints") == before


def test_resume_beside_only_an_unfinished_write_warns_and_starts_from_step_0(cli, run):
    """A run killed while writing its first checkpoint: a restart running the same --resume command goes on."""
    unfinished_only(run)
    result = cli("train", TINY, "--out", run, *FAST, "--steps", "2", "--resume")
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: --resume:")]
    assert len(warning) == 1 and "only unfinished writes (step-000000001.pt.tmp: an unfinished write of " in warning[0]
    assert "starting from step 0" in result.stderr
    assert step_file(run, 2).is_file()  # trained from step 0 and checkpointed


def test_resume_into_an_empty_checkpoint_folder_still_starts_from_step_0(cli, tmp_path):
    """Nothing there at all is not a damaged run (a first `--resume`, as torchrun restarts and studies use)."""
    out = tmp_path / "new"
    (out / "checkpoints").mkdir(parents=True)
    result = cli("train", TINY, "--out", out, *FAST, "--steps", "1", "--resume")
    assert result.exit_code == 0, result.stderr
    assert "starting from step 0" in result.stderr


# -- a blueprint that changed shapes: the first misfit named, nothing written ---------------------------------
CHANGED = {
    "latent_dim": (["--set", "generator.latent_dim=16"],
                   ("generator", "[1024, 32] in the checkpoint but [1024, 16] here",
                    "the blueprint differs at generator.latent_dim (32 in the checkpoint, 16 now)")),
    "generator channels": (["--set", "generator.blocks.0.channels=48"],
                           ("generator.layers.", "[64] in the checkpoint but [48] here",
                            "generator.blocks[0].channels (64 in the checkpoint, 48 now)")),
    "discriminator channels": (["--set", "discriminator.blocks.0.channels=16"],
                               ("this blueprint's discriminator: discriminator.",
                                "discriminator.blocks[0].channels (32 in the checkpoint, 16 now)")),
}


@pytest.mark.parametrize("case", list(CHANGED))
def test_resume_with_a_blueprint_that_changed_shapes_is_one_line(cli, run, case):
    overrides, words = CHANGED[case]
    before = files_of(run / "checkpoints")
    result = cli("train", TINY, "--out", run, *FAST, *overrides, "--steps", "4", "--resume")
    assert_clean_failure(result, mentions=(f"--resume: {step_file(run, 2)} does not fit", *words))
    assert files_of(run / "checkpoints") == before


# -- exports with hostile metadata: sample, evaluate and ganforge.load each say one line -----------------------
@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    from ganforge.cli import cli as group

    out = tmp_path_factory.mktemp("export") / "model.safetensors"
    result = CliRunner().invoke(group, ["export", str(trained), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    with safe_open(str(out), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}, dict(handle.metadata())


HOSTILE_METADATA = {
    "blueprint nested list": ({"blueprint": "[" * 100_000 + "]" * 100_000}, "nested more than 64 levels"),
    "blueprint nested dict": ({"blueprint": '{"a":' * 100_000 + "1" + "}" * 100_000}, "nested more than 64 levels"),
    "blueprint 65 levels": ({"blueprint": '{"a":' * 65 + "1" + "}" * 65}, "nested more than 64 levels"),
    "version Arabic-Indic 1": ({"format_version": "\u0661"}, "unknown export format version '\u0661'"),
    "version 5000 digits": ({"format_version": "9" * 5000}, "unknown export format version '9999"),
    "step Arabic-Indic 3": ({"step": "\u0663"}, "step '\u0663' is not a decimal number"),
}


@pytest.mark.parametrize("entry", ["sample", "evaluate", "ganforge.load"])
@pytest.mark.parametrize("case", list(HOSTILE_METADATA))
def test_export_with_hostile_metadata_is_one_line(cli, exported, tmp_path, stand_in, case, entry):
    from safetensors.torch import save_file

    import ganforge
    from ganforge.errors import GanforgeError

    changes, words = HOSTILE_METADATA[case]
    tensors, metadata = exported
    path = tmp_path / "hostile.safetensors"
    save_file(tensors, str(path), metadata={**metadata, **changes})
    if entry == "ganforge.load":
        with pytest.raises(GanforgeError) as caught:
            ganforge.load(path, device="cpu")
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and words in message, message
        return
    if entry == "sample":
        result = cli("sample", path, "--n", "1", "--out", tmp_path / "grid.png", "--device", "cpu")
    else:
        result = cli("evaluate", path, "--n", "8", "--metrics", "fid", "--inception", stand_in, "--device", "cpu",
                     "--batch-size", "8")
    assert_clean_failure(result, mentions=(str(path), words))
    assert not (tmp_path / "grid.png").exists()


def test_a_plain_ascii_export_still_loads(exported, tmp_path):
    from safetensors.torch import save_file

    import ganforge

    tensors, metadata = exported
    path = tmp_path / "plain.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    assert ganforge.load(path, device="cpu").step == 2
