"""Refused writes and damaged checkpoints (issue 10 §4–§5): one clear line, exit 2, checkpoints kept.

Read-only folders are real (chmod) for an ordinary user; as root, whom chmod does not stop, the
refusals the kernel would make are simulated (creating, renaming or removing an entry of that
folder raises PermissionError), so these tests run in both cases.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from support import (CHECKPOINT_EVERY_STEP, ROOT, TINY, assert_clean_failure, step_file,
                     train_tiny_two_steps)

FAST = CHECKPOINT_EVERY_STEP
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def cli_group():  # type: ignore[no-untyped-def]
    from ganforge.cli import cli as group

    return group


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run for the whole file: checkpoints at steps 1 and 2, the step-2 sample grid."""
    return train_tiny_two_steps(tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def flip_4kb_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0xFF for b in data[middle:middle + 4096])  # every byte differs
    path.write_bytes(bytes(data))


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: chmod 0o555, and as root also simulate what the kernel would refuse."""
    folders: list[Path] = []

    def inside(target) -> bool:  # type: ignore[no-untyped-def]
        if not isinstance(target, (str, bytes, os.PathLike)):
            return False
        parent = os.path.dirname(os.path.abspath(os.fsdecode(target)))
        return any(os.path.realpath(parent) == os.path.realpath(folder) for folder in folders)

    def refuse(target) -> None:  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", os.fsdecode(target))

    if AS_ROOT:
        real_open, real_os_open = builtins.open, os.open
        real_mkdir, real_replace, real_rename, real_unlink, real_rmdir = (os.mkdir, os.replace, os.rename,
                                                                          os.unlink, os.rmdir)

        def guarded_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
            if any(flag in mode for flag in "wax+") and inside(file) and not os.path.exists(file):
                refuse(file)
            return real_open(file, mode, *args, **kwargs)

        def guarded_os_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if flags & os.O_CREAT and inside(path) and not os.path.exists(path):
                refuse(path)
            return real_os_open(path, flags, *args, **kwargs)

        def guard(real, *, pair: bool = False):  # type: ignore[no-untyped-def]
            def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
                for target in args[:2] if pair else args[:1]:
                    if inside(target):
                        refuse(target)
                return real(*args, **kwargs)
            return guarded

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(os, "open", guarded_os_open)
        monkeypatch.setattr(os, "mkdir", guard(real_mkdir))
        monkeypatch.setattr(os, "replace", guard(real_replace, pair=True))
        monkeypatch.setattr(os, "rename", guard(real_rename, pair=True))
        monkeypatch.setattr(os, "unlink", guard(real_unlink))
        monkeypatch.setattr(os, "remove", guard(real_unlink))
        monkeypatch.setattr(os, "rmdir", guard(real_rmdir))

    def make(folder: Path) -> Path:
        folder.chmod(0o555)
        folders.append(folder)
        return folder

    yield make
    for folder in folders:
        folder.chmod(0o755)


# --- §4 refused writes ------------------------------------------------------------------------------
def test_read_only_samples_folder_stops_training_with_one_line_and_keeps_checkpoints(cli, run, read_only):
    before = {p.name: p.read_bytes() for p in (step_file(run, 1), step_file(run, 2))}
    samples = read_only(run / "samples")
    result = cli("train", TINY, "--out", run, *FAST, "--set", "train.sample_every=1", "--steps", "3", "--resume")
    # A run that fails mid-way has printed its progress; the failure itself is one last line.
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert "cannot write sample grid" in errors[0] and str(samples) in errors[0] and "intact" in errors[0]
    for name, data in before.items():
        assert (run / "checkpoints" / name).read_bytes() == data
    from ganforge.engine.checkpoints import load_checkpoint

    assert load_checkpoint(step_file(run, 2))["step"] == 2
    # The step the run reached before the refused grid is checkpointed too, so no work is lost.
    assert load_checkpoint(step_file(run, 3))["step"] == 3


def test_read_only_run_folder_sample_is_one_line(cli, run, read_only):
    shutil.rmtree(run / "samples")
    before = step_file(run, 2).read_bytes()
    read_only(run)
    result = cli("sample", run, "--n", "1", "--device", "cpu")
    assert_clean_failure(result, mentions=(str(run / "samples" / "sample.png"), "Permission denied"))
    assert step_file(run, 2).read_bytes() == before


def test_sample_grid_under_a_regular_file_is_one_error_naming_the_path(tmp_path):
    from ganforge.engine.samples import save_grid
    from ganforge.errors import GanforgeError

    blocker = tmp_path / "samples"
    blocker.write_text("a file where a folder belongs")
    with pytest.raises(GanforgeError, match="cannot write sample grid") as caught:
        save_grid(torch.zeros(4, 3, 8, 8), blocker / "grid.png")
    assert str(blocker / "grid.png") in str(caught.value)
    assert blocker.read_text() == "a file where a folder belongs"


def test_failure_before_the_run_starts_leaves_no_empty_run_folder(cli, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()  # there before: must stay
    out = existing / "new" / "run"
    result = cli("train", TINY, "--out", out, "--device", "cpu", "--steps", "1",
                 "--set", "data.size=4", "--set", "train.batch_size=8")
    assert_clean_failure(result, mentions=("fewer than one micro-batch",))
    assert existing.is_dir() and not (existing / "new").exists()


# --- §5 checkpoint integrity -------------------------------------------------------------------------
def test_checkpoint_ends_with_the_sha256_of_its_content(trained):
    from ganforge.engine.checkpoints import TRAILER_MAGIC, TRAILER_SIZE

    data = step_file(trained, 2).read_bytes()
    content, tail = data[:-TRAILER_SIZE], data[-TRAILER_SIZE:]
    assert tail == TRAILER_MAGIC + hashlib.sha256(content).hexdigest().encode() + b"\n"
    # Still an ordinary torch checkpoint: plain weights_only loading ignores the trailer.
    assert torch.load(step_file(trained, 2), weights_only=True)["step"] == 2


def test_altered_newest_checkpoint_is_reported_and_resume_uses_the_previous_one(cli, run):
    flip_4kb_in_the_middle(step_file(run, 2))
    result = cli("train", TINY, "--out", run, *FAST, "--steps", "2", "--resume")
    assert result.exit_code == 0, result.stderr
    assert f"skipping unreadable checkpoint {step_file(run, 2)}" in result.stderr
    assert "checksum mismatch" in result.stderr
    assert f"resumed from {step_file(run, 1)} at step 1" in result.stderr


def test_sample_says_which_checkpoint_it_skipped_and_why(cli, run):
    flip_4kb_in_the_middle(step_file(run, 2))
    result = cli("sample", run, "--n", "1", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning:") and str(step_file(run, 2)) in lines[0]
    assert "checksum mismatch" in lines[0] and "using step-000000001.pt" in lines[0]
    assert f"from {step_file(run, 1)} (step 1" in result.stdout


def test_shared_checkpoint_choice_warns_on_stderr_for_every_command(run, capsys):
    """sample, attention and evaluate all choose through restore() → find_checkpoint()."""
    from ganforge.engine.restore import find_checkpoint
    from ganforge.errors import GanforgeError

    flip_4kb_in_the_middle(step_file(run, 2))
    path, state = find_checkpoint(run)
    assert path == step_file(run, 1) and state["step"] == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and str(step_file(run, 2)) in err[0]
    # None readable: the reasons go into the one error line, not extra lines.
    flip_4kb_in_the_middle(step_file(run, 1))
    with pytest.raises(GanforgeError, match="no readable checkpoint.*step-000000001.pt.*checksum mismatch"):
        find_checkpoint(run)
    assert capsys.readouterr().err == ""


def test_altered_checkpoint_named_directly_is_a_clean_error(cli, run):
    flip_4kb_in_the_middle(step_file(run, 2))
    assert_clean_failure(cli("sample", step_file(run, 2), "--device", "cpu"),
                         mentions=(str(step_file(run, 2)), "checksum mismatch"))


def test_checkpoint_from_before_checksums_loads_with_one_warning(run):
    """Format 1 (no trailer) is accepted, unverified, with a warning; format 2 without its trailer is not."""
    from ganforge.engine.checkpoints import TRAILER_SIZE, ChecksumMismatch, load_checkpoint

    state = torch.load(step_file(run, 2), weights_only=True)
    old = run / "old.pt"
    torch.save({**state, "format": 1}, old)
    warnings: list[str] = []
    assert load_checkpoint(old, warn=warnings.append)["step"] == 2
    assert len(warnings) == 1 and "no checksum" in warnings[0] and str(old) in warnings[0]

    stripped = run / "stripped.pt"
    stripped.write_bytes(step_file(run, 2).read_bytes()[:-TRAILER_SIZE])
    with pytest.raises(ChecksumMismatch, match="trailer is missing"):
        load_checkpoint(stripped)


# --- issue 22: a full disk, during training and during export ----------------------------------------
# No small filesystem can be mounted here (no root needed, none assumed), so a full disk is made two
# ways. In a subprocess, RLIMIT_FSIZE (SIGXFSZ ignored) makes the kernel refuse every write past the
# limit with EFBIG: the real failure path through torch.save's C++ writer and safetensors' Rust one,
# which ENOSPC takes too. In-process, the file object torch.save writes to raises ENOSPC itself.
PROGRESS = ("[", "resumed from", "training to step", "no checkpoint in")  # what a run prints before failing


def ganforge_on_a_full_disk(*args: object, limit: int) -> subprocess.CompletedProcess:
    """``python -m ganforge ARGS`` in a process that cannot write a file past ``limit`` bytes."""
    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, preexec_fn=small_disk)


def failed_mid_run(result, *, mentions: tuple[str, ...]) -> str:
    """``assert_clean_failure`` for a run that fails after starting: its progress lines are left out, nothing else."""
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.stderr
    rest = [line for line in lines if not line.startswith(PROGRESS)]
    return assert_clean_failure(SimpleNamespace(exit_code=code, stderr="\n".join(rest)), mentions=mentions)


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_torch_save_hides_a_full_disk_behind_a_runtime_error(tmp_path):
    """Why ``except OSError`` was not enough: the OSError is only the RuntimeError's context."""
    class FillsUp(io.RawIOBase):
        """Takes the first 2 KB, then the disk is full."""

        taken = 0

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:  # type: ignore[no-untyped-def]
            if self.taken > 2048:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.taken += len(data)
            return len(data)

    with pytest.raises(RuntimeError, match="unexpected pos") as caught:
        torch.save({"w": torch.zeros(10_000)}, FillsUp())
    assert isinstance(caught.value.__context__, OSError) and caught.value.__context__.errno == errno.ENOSPC


def test_full_disk_mid_run_is_one_line_and_the_newest_checkpoint_stays(run):
    """Subprocess, RLIMIT_FSIZE: the checkpoint (3.7 MB) cannot be written, the log lines (bytes) can."""
    before = files_of(run / "checkpoints")
    result = ganforge_on_a_full_disk("train", TINY, "--out", run, *FAST, "--steps", "4", "--resume", limit=1 << 20)
    line = failed_mid_run(result, mentions=(f"cannot write checkpoint {step_file(run, 3)}", "File too large",
                                            "the partial file was removed", "newest step-000000002.pt"))
    assert "unexpected pos" not in line
    assert files_of(run / "checkpoints") == before  # no partial step-3 file, no .tmp, steps 1 and 2 untouched

    resumed = CliRunner().invoke(cli_group(), ["train", str(TINY), "--out", str(run), *FAST, "--steps", "3",
                                               "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.stderr  # space again: it goes on from the intact checkpoint
    assert f"resumed from {step_file(run, 2)} at step 2" in resumed.stderr


def test_full_disk_under_the_tensorboard_events_is_one_line_without_the_writer_threads_traceback(tmp_path):
    """Subprocess, RLIMIT_FSIZE 40 kB: the events file (the step-0 grid as an image, then scalars) is the first
    write past it; TensorBoard's writer thread fails, and its exception used to print a traceback of its own."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    result = ganforge_on_a_full_disk("train", TINY, "--out", out, *FAST, "--set", "train.checkpoint_every=1000",
                                     "--steps", "200", limit=40_000)
    failed_mid_run(result, mentions=(f"cannot write TensorBoard logs to {out / 'tensorboard'}", "File too large"))
    assert "Exception in thread" not in result.stderr


def test_no_space_left_inside_torch_save_is_one_line(cli, run, monkeypatch):
    """In-process, ENOSPC raised by the file torch.save writes to, halfway through: torch's own wrapping."""
    from ganforge.engine import checksums

    real_write = checksums.HashingWriter.write

    def fills_up(self, data):  # type: ignore[no-untyped-def]
        if self.size > 1 << 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    before = files_of(run / "checkpoints")
    monkeypatch.setattr(checksums.HashingWriter, "write", fills_up)
    result = cli("train", TINY, "--out", run, *FAST, "--steps", "3", "--resume")
    failed_mid_run(result, mentions=(str(step_file(run, 3)), "No space left on device", "partial file was removed"))
    assert files_of(run / "checkpoints") == before


def test_full_disk_before_the_first_checkpoint_says_none_exists(cli, tmp_path, monkeypatch):
    from ganforge.engine import checksums

    monkeypatch.setattr(checksums.HashingWriter, "write",
                        lambda self, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    out = tmp_path / "fresh"
    result = cli("train", TINY, "--out", out, *FAST, "--steps", "1")
    failed_mid_run(result, mentions=(str(step_file(out, 1)), "No space left", "no earlier checkpoint exists"))
    assert not any((out / "checkpoints").iterdir())


def real_save_then(damage):  # type: ignore[no-untyped-def]
    """A stand-in for safetensors' save_file: the real one, then ``damage(path)`` without any error."""
    from safetensors.torch import save_file

    def save(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        save_file(tensors, filename, metadata=metadata)
        damage(Path(filename))

    return save


def truncate_to_half(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


EXPORT_FAULTS = {
    # the kernel refuses the write (subprocess, RLIMIT_FSIZE): SafetensorError, once a traceback
    "refused write": ("subprocess", None, ("File too large",)),
    # the write "succeeds" but half the bytes never arrive (a lost buffered write): once exit 0, silent
    "short file": ("patch", ("safetensors.torch.save_file", real_save_then(truncate_to_half)),
                   ("of", "bytes reached the disk")),
    # the disk only says so at fsync (delayed allocation, a network filesystem)
    "fsync fails": ("patch", ("os.fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC,
                                                                                 "No space left on device"))),
                    ("No space left on device",)),
}


@pytest.mark.parametrize("fault", list(EXPORT_FAULTS))
def test_export_into_a_full_disk_never_exits_0_nor_leaves_a_file(cli, trained, tmp_path, monkeypatch, fault):
    how, patch, words = EXPORT_FAULTS[fault]
    out = tmp_path / "out" / "model.safetensors"
    if how == "subprocess":
        result = ganforge_on_a_full_disk("export", trained, "--out", out, limit=64 << 10)
    else:
        monkeypatch.setattr(*patch)
        result = cli("export", trained, "--out", out)
    assert_clean_failure(result, mentions=(f"cannot write export {out}", *words))
    assert list(out.parent.iterdir()) == []  # neither model.safetensors nor its .tmp


def test_export_under_a_regular_file_names_it(cli, trained, tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("a file where a folder belongs")
    assert_clean_failure(cli("export", trained, "--out", blocker / "model.safetensors"),
                         mentions=(str(blocker / "model.safetensors"), f"Not a directory ({blocker})"))
    assert blocker.read_text() == "a file where a folder belongs"


def test_export_writes_a_complete_file_when_the_disk_has_room(cli, trained, tmp_path):
    from ganforge.engine.export_format import read_export

    out = tmp_path / "model.safetensors"
    result = cli("export", trained, "--out", out)
    assert result.exit_code == 0, result.stderr
    tensors, metadata = read_export(out)
    assert metadata["step"] == "2" and tensors
    assert sorted(tmp_path.iterdir()) == [tmp_path / "README.md", out]  # the export and its model card, no .tmp
