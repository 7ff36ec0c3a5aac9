"""Hostile datasets (issue 22): `npz` files, prepared folders and `prepare` inputs that used to end in a
traceback, a hang or silent damage. Each bad input ends in exit 2 and one line naming the file and the key.

Cases that could hang (FIFOs) run ganforge in a subprocess with a short timeout, so a regression fails
instead of blocking the suite.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ganforge.components.data import prepare as prepare_module
from ganforge.components.data.prepare import prepare
from ganforge.errors import GanforgeError
from support import TINY, assert_clean_failure, run_ganforge

TRAIN = ("--steps", "1", "--device", "cpu", "--set", "train.batch_size=8", "--set", "train.log_every=1",
         "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=1000")
HANG_LIMIT = 60  # seconds a subprocess may take before a case counts as hanging (each ends in a few)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def train(cli, out: Path, data: str, *extra: str):
    return cli("train", TINY, "--out", out, *TRAIN, "--set", f"data={data}", *extra)


def make_classes(root: Path, *, per_class: int = 6) -> Path:
    """Two class folders of small distinct PNGs."""
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 12), (40 * i, 120 * label, 7)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_classes(tmp_path_factory.mktemp("source") / "train")


@pytest.fixture(scope="module")
def prepared_once(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "p16"
    prepare(source, out=out, resolution=16, workers=1, progress=False)
    return out


@pytest.fixture
def prepared(prepared_once, tmp_path) -> Path:
    """A private copy of a 12-image, 2-class prepared folder at 16×16 (one shard)."""
    return Path(shutil.copytree(prepared_once, tmp_path / "p16"))


def prepared_data(folder: Path) -> str:
    return "{type: prepared, root: %s, resolution: 16, num_classes: 2}" % folder


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def rewrite_labels(folder: Path, labels: np.ndarray) -> None:
    """New labels, with the manifest's size and hash updated to match (a consistent but wrong folder)."""
    np.save(folder / "labels-00000.npy", labels.astype(np.int64))
    raw = (folder / "labels-00000.npy").read_bytes()

    def change(manifest):
        manifest["shards"][0].update(labels_bytes=len(raw), labels_sha256=hashlib.sha256(raw).hexdigest())

    edit_manifest(folder, change)


def flip_pixel_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(len(data) - 100, len(data) - 90):  # inside the pixel data, past the .npy header
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --- §1: npz files ---------------------------------------------------------------------------------------------
def _npz_case(folder: Path, case: str) -> tuple[Path, tuple[str, ...]]:
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    path = folder / f"{case}.npz"
    if case == "labels_out_of_range":
        np.savez(path, images=images, labels=np.arange(16))
        return path, ("'labels'", "label 15", "data.num_classes")
    if case == "negative_labels":
        np.savez(path, images=images, labels=-np.ones(16, dtype=np.int64))
        return path, ("'labels'", "label -1")
    if case == "fewer_labels":
        np.savez(path, images=images, labels=np.arange(4) % 2)
        return path, ("'labels'", "(4,)", "16 images")
    if case == "float_labels":
        np.savez(path, images=images, labels=np.arange(16) * 0.1)
        return path, ("'labels'", "float64")
    if case == "object_array":
        np.savez(path, images=np.array([images[0], 1], dtype=object), labels=np.arange(2), allow_pickle=True)
        return path, ("'images'", "Object arrays")
    if case == "not_a_zip":
        path.write_bytes(b"hello, I am text")
        return path, ("not an .npz file",)
    if case == "truncated":
        np.savez(path, images=images, labels=np.arange(16) % 2)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, ("not a readable .npz",)
    if case == "npy_not_npz":
        with open(path, "wb") as handle:
            np.save(handle, images)
        return path, ("a single .npy array",)
    if case == "nan_pixels":
        np.savez(path, images=np.full((16, 16, 16, 3), np.nan, dtype=np.float32), labels=np.arange(16) % 2)
        return path, ("'images'", "NaN")
    if case == "int_pixels":
        np.savez(path, images=images.astype(np.int64), labels=np.arange(16) % 2)
        return path, ("'images'", "int64")
    if case == "directory":
        path.mkdir()
        return path, ("is a directory",)
    raise AssertionError(case)


NPZ_CASES = ["labels_out_of_range", "negative_labels", "fewer_labels", "float_labels", "object_array", "not_a_zip",
             "truncated", "npy_not_npz", "nan_pixels", "int_pixels", "directory"]


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_files_end_in_one_line(cli, tmp_path, case):
    path, mentions = _npz_case(tmp_path, case)
    start = time.perf_counter()
    result = train(cli, tmp_path / "run", "{type: npz, root: %s, resolution: 16, num_classes: 2}" % path)
    assert_clean_failure(result, mentions=(path.name, *mentions), seconds=30, elapsed=time.perf_counter() - start)


def test_a_good_npz_file_still_trains(cli, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "ok.npz", images=images, labels=np.arange(16) % 2)
    result = train(cli, tmp_path / "run", "{type: npz, root: %s, resolution: 16, num_classes: 2}" % (tmp_path / "ok.npz"))
    assert result.exit_code == 0, result.stderr


# --- §2, §5, §6, §7: prepared folders -------------------------------------------------------------------------
def _damage(folder: Path, case: str) -> tuple[str, ...]:
    """Damage ``folder`` as ``case`` says; returns what the error line must name."""
    if case == "negative_label":
        rewrite_labels(folder, np.full(12, -1))
        return ("labels-00000.npy", "label -1")
    if case == "label_out_of_range":
        rewrite_labels(folder, np.arange(12))
        return ("labels-00000.npy", "label 11", "2 classes")
    if case == "classes_an_integer":
        edit_manifest(folder, lambda m: m.update(classes=7))
        return ("manifest.json", "classes", "list")
    if case == "count_a_string":
        edit_manifest(folder, lambda m: m["shards"][0].update(count="12"))
        return ("manifest.json", "shards[0].count", "integer")
    if case == "count_huge":
        edit_manifest(folder, lambda m: m["shards"][0].update(count=10**30))
        return ("manifest.json", "shards[0].count")
    if case == "shard_without_labels":
        edit_manifest(folder, lambda m: m["shards"][0].pop("labels"))
        return ("manifest.json", "shards[0].labels", "required")
    if case == "shards_not_a_list":
        edit_manifest(folder, lambda m: m.update(shards={"images": "images-00000.npy"}))
        return ("manifest.json", "shards", "list")
    if case == "resolution_a_string":
        edit_manifest(folder, lambda m: m.update(resolution="16"))
        return ("manifest.json", "resolution", "integer", "'16'")
    if case == "deeply_nested":
        (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
        return ("manifest.json", "nested")
    if case == "nested_inside_a_key":
        edit_manifest(folder, lambda m: m.update(skipped=json.loads("[" * 500 + "]" * 500)))
        return ("manifest.json", "nested")
    if case == "manifest_not_json":
        (folder / "manifest.json").write_bytes(b"\xff\xfe not json")
        return ("manifest.json", "not a readable")
    if case == "manifest_a_list":
        (folder / "manifest.json").write_text("[1, 2]")
        return ("manifest.json", "(top level)")
    if case == "path_escapes":
        (folder.parent / "outside.npy").write_bytes((folder / "images-00000.npy").read_bytes())
        edit_manifest(folder, lambda m: m["shards"][0].update(images="../outside.npy"))
        return ("manifest.json", "shards[0].images", "leads out of the folder")
    if case == "path_absolute":
        edit_manifest(folder, lambda m: m["shards"][0].update(images=str((folder / "images-00000.npy").resolve())))
        return ("manifest.json", "shards[0].images", "absolute")
    if case == "flipped_pixel_bytes":
        flip_pixel_bytes(folder / "images-00000.npy")
        return ("images-00000.npy", "SHA-256")
    if case == "truncated_shard":
        path = folder / "images-00000.npy"
        path.write_bytes(path.read_bytes()[:-64])
        return ("images-00000.npy", "bytes")
    if case == "shard_missing":
        (folder / "images-00000.npy").unlink()
        return ("images-00000.npy", "No such file")
    if case == "shard_a_directory":
        (folder / "images-00000.npy").unlink()
        (folder / "images-00000.npy").mkdir()
        return ("images-00000.npy", "directory")
    if case == "shard_wrong_shape":  # a consistent manifest whose count disagrees with the array
        edit_manifest(folder, lambda m: m["shards"][0].update(count=11))
        return ("images-00000.npy", "12×3×16×16")
    raise AssertionError(case)


PREPARED_CASES = ["negative_label", "label_out_of_range", "classes_an_integer", "count_a_string", "count_huge",
                  "shard_without_labels", "shards_not_a_list", "resolution_a_string", "deeply_nested",
                  "nested_inside_a_key", "manifest_not_json", "manifest_a_list", "path_escapes", "path_absolute",
                  "flipped_pixel_bytes", "truncated_shard", "shard_missing", "shard_a_directory", "shard_wrong_shape"]


@pytest.mark.parametrize("case", PREPARED_CASES)
def test_damaged_prepared_folders_end_in_one_line(cli, prepared, tmp_path, case):
    mentions = _damage(prepared, case)
    start = time.perf_counter()
    result = train(cli, tmp_path / "run", prepared_data(prepared))
    assert_clean_failure(result, mentions=mentions, seconds=30, elapsed=time.perf_counter() - start)


def test_an_undamaged_copy_trains(cli, prepared, tmp_path):
    result = train(cli, tmp_path / "run", prepared_data(prepared))
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr


def test_manifest_records_size_and_sha256_of_every_array(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    for shard in manifest["shards"]:
        for key in ("images", "labels"):
            raw = (prepared / shard[key]).read_bytes()
            assert shard[f"{key}_bytes"] == len(raw)
            assert shard[f"{key}_sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_manifest_without_checksums_loads_with_one_warning(cli, prepared, tmp_path):
    def strip(manifest):
        for shard in manifest["shards"]:
            for key in ("images_bytes", "images_sha256", "labels_bytes", "labels_sha256"):
                shard.pop(key)

    edit_manifest(prepared, strip)
    result = train(cli, tmp_path / "run", prepared_data(prepared))
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no shard checksums" in warnings[0] and "manifest.json" in warnings[0]


def test_rerunning_prepare_adds_checksums_to_an_old_folder(source, prepared):
    for name in ("shard-00000.json", "manifest.json"):  # as ganforge before checksums wrote them
        record = json.loads((prepared / name).read_text())
        for entry in record.get("shards", [record]):
            for key in ("images_bytes", "images_sha256", "labels_bytes", "labels_sha256"):
                entry.pop(key)
        (prepared / name).write_text(json.dumps(record))
    manifest = prepare(source, out=prepared, resolution=16, workers=1, progress=False)
    raw = (prepared / "images-00000.npy").read_bytes()
    assert manifest["shards"][0]["images_sha256"] == hashlib.sha256(raw).hexdigest()


def test_each_shard_is_hashed_once_per_process(prepared, monkeypatch):
    """The builder hashes every shard; a DataLoader worker's copy (pickled) re-hashes only a changed file."""
    import pickle

    from ganforge.components.data import shardfile
    from ganforge.registry import default_registry

    hashed = []
    real = shardfile.sha256_of
    monkeypatch.setattr(shardfile, "sha256_of", lambda handle: hashed.append(handle.name) or real(handle))
    data = default_registry().get("dataset", "prepared").build({"root": str(prepared), "resolution": 16})
    assert len(hashed) == 2  # images and labels of the one shard
    data[0], data[5]
    worker = pickle.loads(pickle.dumps(data))
    worker[3]
    assert len(hashed) == 2
    flip_pixel_bytes(prepared / "images-00000.npy")  # changed after the check: size and mtime tell
    os.utime(prepared / "images-00000.npy", ns=(1, 1))
    with pytest.raises(GanforgeError, match="SHA-256"):
        pickle.loads(pickle.dumps(data))[3]
    assert len(hashed) == 3


def test_verify_false_checks_sizes_but_not_hashes(prepared):
    from ganforge.registry import default_registry

    flip_pixel_bytes(prepared / "images-00000.npy")
    build = default_registry().get("dataset", "prepared").build
    data = build({"root": str(prepared), "resolution": 16, "verify": False})
    assert len(data) == 12
    path = prepared / "images-00000.npy"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(GanforgeError, match="bytes but the manifest records"):
        build({"root": str(prepared), "resolution": 16, "verify": False})


def test_a_string_resolution_is_shown_with_its_type(prepared):
    """§7: when the two sides differ in type, the message says so instead of "16 but ... 16"."""
    from ganforge.components.data.prepared import prepared as build_prepared

    with pytest.raises(GanforgeError) as refused:
        build_prepared(root=str(prepared), resolution="16")
    assert "'16' (str)" in str(refused.value) and "16 (int)" in str(refused.value)


@pytest.mark.parametrize("value, ok", [('"16"', True), ("sixteen", False), ("16.5", False)])
def test_data_resolution_strings_are_coerced_or_refused(cli, prepared, tmp_path, value, ok):
    result = train(cli, tmp_path / "run", "{type: prepared, root: %s, resolution: %s, num_classes: 2}"
                   % (prepared, value))
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        assert_clean_failure(result, mentions=("data.resolution",))


# --- §4: special files are never opened ------------------------------------------------------------------------
def _timed_subprocess(*args: str) -> tuple[object, float]:
    start = time.perf_counter()
    result = run_ganforge(*args, env={"OMP_NUM_THREADS": "1"}, timeout=HANG_LIMIT)  # TimeoutExpired: a hang
    return result, time.perf_counter() - start


@pytest.mark.parametrize("which", ["images-00000.npy", "labels-00000.npy", "manifest.json"])
def test_a_fifo_in_a_prepared_folder_is_refused_not_read(prepared, tmp_path, which):
    (prepared / which).unlink()
    os.mkfifo(prepared / which)
    result, elapsed = _timed_subprocess("train", str(TINY), "--out", str(tmp_path / "run"), *TRAIN,
                                        "--set", f"data={prepared_data(prepared)}")
    assert_clean_failure(result, mentions=(which, "FIFO"), seconds=HANG_LIMIT, elapsed=elapsed)


def test_a_fifo_as_the_npz_file_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "d.npz")
    result, elapsed = _timed_subprocess("train", str(TINY), "--out", str(tmp_path / "run"), *TRAIN, "--set",
                                        "data={type: npz, root: %s, resolution: 16, num_classes: 2}" % (tmp_path / "d.npz"))
    assert_clean_failure(result, mentions=("d.npz", "FIFO"), seconds=HANG_LIMIT, elapsed=elapsed)


# --- §3, §4: prepare skips what it cannot read, and counts it ---------------------------------------------------
@pytest.mark.parametrize("case", ["fifo", "dangling_symlink", "device_symlink", "fifo_in_two_workers"])
def test_prepare_skips_and_counts_special_files(tmp_path, case):
    root = make_classes(tmp_path / "train")
    name = {"fifo": "a/pipe.png", "dangling_symlink": "b/gone.jpg", "device_symlink": "a/zero.png",
            "fifo_in_two_workers": "b/pipe.png"}[case]
    if case.startswith("fifo"):
        os.mkfifo(root / name)
    else:
        os.symlink("/nonexistent/x.jpg" if case == "dangling_symlink" else "/dev/zero", root / name)
    workers = "2" if case == "fifo_in_two_workers" else "1"
    result, elapsed = _timed_subprocess("prepare", str(root), "--resolution", "8", "--out", str(tmp_path / "p"),
                                        "--workers", workers)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and elapsed < HANG_LIMIT
    assert "12 images" in result.stdout and "1 unreadable file(s) skipped" in result.stdout
    assert f"skipped {name}" in result.stdout
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [entry["path"] for entry in manifest["skipped"]] == [name]


def within(seconds: float, run, *, fifo: Path):
    """``run()`` in a thread; if it is still blocked after ``seconds``, open ``fifo`` for writing (which
    releases a reader blocked opening it) and fail, so a regression cannot hang the suite."""
    import threading

    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(run()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"blocked for {seconds} s opening {fifo}")
    assert outcome, "run() raised (see the thread's traceback above)"
    return outcome[0]


def test_a_fifo_among_training_images_is_skipped_and_counted(tmp_path):
    from ganforge.registry import default_registry

    root = make_classes(tmp_path / "train", per_class=2)
    os.mkfifo(root / "a" / "pipe.png")

    def read_all() -> tuple[int, int]:
        data = default_registry().get("dataset", "imagefolder").build(
            {"root": str(root), "resolution": 8, "num_classes": 2, "flip": False})
        return len(data), sum(int(data[i][2]) for i in range(len(data)))

    assert within(20, read_all, fifo=root / "a" / "pipe.png") == (5, 1)


def test_prepare_rewrites_a_shard_replaced_by_a_fifo(source, prepared):
    (prepared / "images-00000.npy").unlink()
    os.mkfifo(prepared / "images-00000.npy")
    (prepared / "manifest.json").unlink()
    result, elapsed = _timed_subprocess("prepare", str(source), "--resolution", "16", "--out", str(prepared),
                                        "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert (prepared / "images-00000.npy").is_file()


# --- §8: a full disk during prepare -----------------------------------------------------------------------------
class _FillingFile:
    """A real file that takes ``room`` bytes, writes what fits, then fails as a full disk does."""

    def __init__(self, handle, room: list[int], numpy_style: bool) -> None:
        self.handle, self.room, self.numpy_style = handle, room, numpy_style

    def write(self, data) -> int:
        data = bytes(data)
        fits = data[: self.room[0]]
        self.handle.write(fits)
        self.room[0] -= len(fits)
        if len(fits) < len(data):
            if self.numpy_style:  # what ndarray.tofile raises
                raise OSError(f"{len(data)} requested and {len(fits)} written")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def failed_after_progress(result, *, mentions: tuple[str, ...]) -> str:
    """``assert_clean_failure`` for a prepare that failed mid-way: its progress lines left out, nothing else."""
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.stderr
    rest = [line for line in lines if not line.startswith("prepare: ")]
    return assert_clean_failure(SimpleNamespace(exit_code=code, stderr="\n".join(rest)), mentions=mentions)


@pytest.fixture(scope="module")
def prepared_by_four(source, tmp_path_factory) -> Path:
    """``source`` prepared at 16×16 in shards of 4 files, with room to spare (what a full disk must end as)."""
    out = tmp_path_factory.mktemp("by_four") / "p16"
    prepare(source, out=out, resolution=16, workers=1, shard_size=4, progress=False)
    return out


@pytest.mark.parametrize("room, numpy_style", [(0, False), (1000, False), (5000, False), (5000, True), (9000, False),
                                               (-1, False)])
def test_prepare_into_a_full_disk_leaves_nothing_that_looks_complete(cli, source, prepared_by_four, tmp_path,
                                                                     monkeypatch, room, numpy_style):
    """``room`` bytes fit (plan.json is about 300, one shard about 3,600; -1: all but the manifest), then
    writes fail as on a full disk."""
    import builtins

    out = tmp_path / "p16"
    last = room == -1
    if last:
        room = sum(p.stat().st_size for p in prepared_by_four.iterdir()) - (prepared_by_four / "manifest.json").stat().st_size
    left = [room]

    def filling_open(file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        return _FillingFile(handle, left, numpy_style) if "w" in mode else handle

    monkeypatch.setattr(prepare_module, "open", filling_open, raising=False)
    result = cli("prepare", source, "--resolution", "16", "--out", out, "--workers", "1", "--shard-size", "4")
    line = failed_after_progress(result, mentions=("cannot write", str(out)))
    assert ("No space left on device" in line) != numpy_style and ("requested" in line) == numpy_style
    assert ("manifest.json" in line) == last
    assert not list(out.glob(".*.tmp")) and not (out / "manifest.json").exists()
    for record in out.glob("shard-*.json"):  # a shard that counts as complete is complete
        index = record.stem.split("-")[1]
        for name in (f"images-{index}.npy", f"labels-{index}.npy"):
            assert (out / name).read_bytes() == (prepared_by_four / name).read_bytes()
    monkeypatch.undo()  # room again: the same command finishes the folder
    again = cli("prepare", source, "--resolution", "16", "--out", out, "--workers", "1", "--shard-size", "4")
    assert again.exit_code == 0, again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in prepared_by_four.iterdir()}


def test_prepare_past_a_real_file_size_limit_is_one_line(source, tmp_path):
    """The kernel's own refusal (RLIMIT_FSIZE: EFBIG, as a quota or full disk refuses), in a subprocess."""
    import resource
    import signal
    import subprocess
    import sys

    from support import ROOT

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    out = tmp_path / "p16"
    result = subprocess.run([sys.executable, "-m", "ganforge", "prepare", str(source), "--resolution", "16", "--out",
                             str(out), "--workers", "1"], capture_output=True, text=True, cwd=ROOT, timeout=HANG_LIMIT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=small_files)
    failed_after_progress(result, mentions=("cannot write", "images-00000.npy", "File too large"))
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]
