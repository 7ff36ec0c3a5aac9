"""`cifar10` / `cifar100` (issue 23 §2): the pickle batch folders torchvision downloads, read in place with
torchvision's classes; `ganforge prepare --source cifar10`; exact resume; hostile folders end in exit 2.

The folders are written here in the files' own format: Python 2 cPickle protocol 2 (keys and pixel bytes as
Python 2 ``str``, numpy's ``numpy.core`` names), so torchvision's ``encoding="latin1"`` reads ``'data'`` and
the CIFAR site's ``encoding="bytes"`` snippet reads ``b'data'``, as with the real download.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.components.data.cifar import cifar_pixels
from ganforge.components.data.images import resize_and_crop
from ganforge.components.data.prepare import prepare
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import BLUEPRINTS, TINY, assert_clean_failure, run_ganforge
from test_training import assert_identical, weights

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TRAIN = ("--steps", "1", "--device", "cpu", "--set", "train.batch_size=8", "--set", "train.log_every=1",
         "--set", "train.sample_every=1000", "--set", "train.checkpoint_every=1000")
HANG_LIMIT = 60  # seconds the FIFO case may take in a subprocess before it counts as hanging


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Protocol 2 as Python 2's cPickle wrote the CIFAR files: bytes as Python 2 str, ``numpy.core`` names."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        size = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj if size < 256
                   else pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def dump(path: Path, value) -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(value)
    path.write_bytes(buffer.getvalue())


def batch(rng, count: int, labels: dict[bytes, list[int]], name: bytes) -> dict:
    return {b"batch_label": name, **labels, b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(count)]}


def write_cifar10(root: Path, *, per_batch: int = 4, test: int = 6) -> Path:
    """``root/cifar-10-batches-py``: 5 training batches of ``per_batch`` images, a test batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        dump(folder / f"data_batch_{i}", batch(rng, per_batch, {b"labels": labels}, b"training batch %d of 5" % i))
    dump(folder / "test_batch", batch(rng, test, {b"labels": [int(x) for x in rng.integers(0, 10, test)]},
                                      b"testing batch 1 of 1"))
    dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                   b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                                    b"frog", b"horse", b"ship", b"truck"]})
    return root


def write_cifar100(root: Path, *, train: int = 12, test: int = 5) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, count in (("train", train), ("test", test)):
        fine = [int(x) for x in rng.integers(0, 100, count)]
        dump(folder / name, batch(rng, count, {b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]},
                                  name.encode()))
    dump(folder / "meta", {b"fine_label_names": [b"class%d" % i for i in range(100)],
                           b"coarse_label_names": [b"super%d" % i for i in range(20)]})
    return root


def build(**settings):
    return default_registry().get("dataset", settings.pop("type", "cifar10")).build(settings)


def read(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


@pytest.fixture(scope="module")
def c10(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("c10") / "data")


@pytest.fixture(scope="module")
def c100(tmp_path_factory) -> Path:
    return write_cifar100(tmp_path_factory.mktemp("c100") / "data")


def train(cli, out: Path, data: str, *extra: str):
    return cli("train", TINY, "--out", out, *TRAIN, "--set", f"data={data}", *extra)


# --- reading --------------------------------------------------------------------------------------
def test_the_written_folder_is_torchvisions_format(c10):
    """torchvision's own class reads it (but its MD5 check refuses anything but the official download)."""
    from torchvision.datasets import CIFAR10

    assert list(read(c10 / "cifar-10-batches-py" / "data_batch_1")) == ["batch_label", "labels", "data", "filenames"]
    with open(c10 / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        assert b"data" in pickle.load(handle, encoding="bytes")
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(str(c10), train=True, download=False)


@pytest.mark.parametrize("where", ["root", "batch_folder"])
def test_cifar10_items_are_the_stored_pixels_and_labels(c10, where):
    folder = c10 / "cifar-10-batches-py"
    data = build(root=str(c10 if where == "root" else folder), num_classes=10, flip=False)
    entries = [read(folder / f"data_batch_{i}") for i in range(1, 6)]
    pixels = np.concatenate([e["data"] for e in entries]).reshape(-1, 3, 32, 32)
    labels = sum((e["labels"] for e in entries), [])
    assert len(data) == 20 and data.classes[0] == "airplane" and len(data.classes) == 10
    image, label = data[7]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32) and label.dtype == torch.int64
    assert torch.equal(image, torch.from_numpy(pixels[7]).float() / 127.5 - 1.0) and int(label) == labels[7]
    test = build(root=str(c10), split="test", num_classes=10, flip=False)
    assert len(test) == 6 and int(test[5][1]) == read(folder / "test_batch")["labels"][5]


def test_cifar100_fine_and_coarse_labels(c100):
    entry = read(c100 / "cifar-100-python" / "train")
    fine = build(type="cifar100", root=str(c100), num_classes=100, flip=False)
    coarse = build(type="cifar100", root=str(c100), label="coarse", num_classes=20, flip=False)
    assert [int(fine[i][1]) for i in range(12)] == entry["fine_labels"]
    assert [int(coarse[i][1]) for i in range(12)] == entry["coarse_labels"]
    assert coarse.classes[0] == "super0" and len(fine.classes) == 100
    assert torch.equal(fine[3][0], coarse[3][0])
    with pytest.raises(GanforgeError, match=r"20 classes but data.num_classes is 100"):
        build(type="cifar100", root=str(c100), label="coarse", num_classes=100)


def test_other_resolutions_and_channels_resize_as_imagefolder_does(c10):
    row = read(c10 / "cifar-10-batches-py" / "data_batch_1")["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    for resolution, channels, mode in ((16, 3, "RGB"), (48, 1, "L")):
        data = build(root=str(c10), resolution=resolution, channels=channels, num_classes=10, flip=False)
        expected = np.array(resize_and_crop(Image.fromarray(row).convert(mode), resolution), dtype=np.uint8)
        expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
        assert data[0][0].shape == (channels, resolution, resolution)
        assert torch.equal(data[0][0], torch.from_numpy(expected).float() / 127.5 - 1.0)


def test_flips_come_from_torchs_rng_one_draw_per_item(c10):
    data = build(root=str(c10), num_classes=10, flip=True)
    torch.manual_seed(3)
    batch_items = data.__getitems__(list(range(20)))
    torch.manual_seed(3)
    single = [data[i] for i in range(20)]
    torch.manual_seed(3)
    flipped = torch.rand(20) < 0.5
    plain = build(root=str(c10), num_classes=10, flip=False)
    for i in range(20):
        assert torch.equal(batch_items[i][0], single[i][0])
        assert torch.equal(single[i][0], plain[i][0].flip(-1) if flipped[i] else plain[i][0])
    assert 0 < int(flipped.sum()) < 20


def test_num_classes_0_trains_unconditionally_and_says_so(c10, capsys):
    build(root=str(c10))
    assert "10 classes but data.num_classes is 0" in capsys.readouterr().err


# --- training -------------------------------------------------------------------------------------
def test_stop_and_resume_on_cifar10_is_exact(cli, c10, tmp_path):
    flags = ["--device", "cpu", "--set", f"data={{type: cifar10, root: {c10}, resolution: 16, num_classes: 10}}",
             "--set", "train.batch_size=8", "--set", "train.log_every=2", "--set", "train.sample_every=1000",
             "--set", "train.checkpoint_every=2"]

    def run(name: str, *extra: str) -> None:
        result = cli("train", TINY, "--out", tmp_path / name, *flags, *extra)
        assert result.exit_code == 0, result.stderr

    run("straight", "--steps", "4")  # 20 images in batches of 8: the resume crosses an epoch; flips are on
    run("split", "--steps", "2")
    run("split", "--steps", "4", "--resume")
    assert_identical(weights(tmp_path / "straight", 4), weights(tmp_path / "split", 4))


def test_a_cifar_blueprint_trains_on_the_folder_with_one_set(cli, c10, tmp_path):
    """The command the README gives: a shipped CIFAR blueprint on the batch folder, no export to images."""
    out = tmp_path / "acgan"
    result = cli("train", BLUEPRINTS / "acgan_cifar10.yaml", "--out", out, *TRAIN, "--set", "train.batch_size=4",
                 "--set", "train.num_workers=0",
                 "--set", f"data={{type: cifar10, root: {c10}, resolution: 32, num_classes: 10}}")
    assert result.exit_code == 0, result.stderr
    assert (out / "checkpoints" / f"step-{1:09d}.pt").exists()


# --- prepare --------------------------------------------------------------------------------------
def test_prepare_from_cifar_gives_the_same_items(cli, c10, c100, tmp_path):
    out = tmp_path / "p32"
    result = cli("prepare", c10, "--source", "cifar10", "--resolution", "32", "--out", out, "--workers", "1",
                 "--shard-size", "7")
    assert result.exit_code == 0, result.stderr
    assert "20 images at 32×32, 10 classes, 3 shard(s)" in result.stdout
    direct = build(root=str(c10), num_classes=10, flip=False)
    shards = build(type="prepared", root=str(out), resolution=32, num_classes=10, flip=False)
    assert shards.classes == direct.classes and len(shards) == len(direct)
    for i in range(len(direct)):
        assert torch.equal(shards[i][0], direct[i][0]) and int(shards[i][1]) == int(direct[i][1])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli("prepare", c10, "--source", "cifar10", "--resolution", "32", "--out", out).exit_code == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # a rerun finds every shard complete
    test = cli("prepare", c10, "--source", "cifar10", "--split", "test", "--resolution", "32", "--out", out)
    assert_clean_failure(test, mentions=("other settings", "source_type"))

    coarse = tmp_path / "c16"
    result = cli("prepare", c100, "--source", "cifar100", "--label", "coarse", "--resolution", "16", "--out", coarse,
                 "--workers", "2")
    assert result.exit_code == 0, result.stderr
    direct = build(type="cifar100", root=str(c100), label="coarse", resolution=16, num_classes=20, flip=False)
    shards = build(type="prepared", root=str(coarse), resolution=16, num_classes=20, flip=False)
    assert all(torch.equal(shards[i][0], direct[i][0]) and int(shards[i][1]) == int(direct[i][1]) for i in range(12))


def test_prepare_on_a_cifar_folder_without_source_says_which(cli, c10, tmp_path):
    result = cli("prepare", c10, "--resolution", "32", "--out", tmp_path / "p")
    assert_clean_failure(result, mentions=("--source cifar10",))
    result = cli("prepare", c10, "--split", "test", "--resolution", "32", "--out", tmp_path / "p")
    assert_clean_failure(result, mentions=("--split",))
    result = cli("prepare", c10, "--source", "cifar10", "--label", "coarse", "--resolution", "32", "--out", tmp_path / "p")
    assert_clean_failure(result, mentions=("--label", "cifar100 only"))


# --- hostile folders ------------------------------------------------------------------------------
def _evil_bytes(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"data": Payload(), "labels": []}, protocol=2)


def _break(case: str, folder: Path, tmp_path: Path) -> tuple[str, ...]:
    """Damage ``folder`` (a cifar-10-batches-py) one way; returns what the error line must name."""
    target = folder / "data_batch_3"
    entry = {k.encode(): v if not isinstance(v, str) else v.encode() for k, v in read(target).items()}
    entry[b"filenames"] = [f.encode() for f in read(target)["filenames"]]
    if case == "missing_batch":
        target.unlink()
        return ("data_batch_3", "missing")
    if case == "fifo_batch":
        target.unlink()
        os.mkfifo(target)
        return ("data_batch_3", "FIFO")
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:500])
        return ("data_batch_3", "not a readable CIFAR pickle")
    if case == "not_a_pickle":
        target.write_bytes(b"PNG, not a pickle at all" * 10)
        return ("data_batch_3", "not a readable CIFAR pickle")
    if case == "code_in_pickle":
        target.write_bytes(_evil_bytes(tmp_path / "MARKER"))
        return ("data_batch_3", "refused", "posix.system")
    if case == "a_list":
        dump(target, [1, 2, 3])
        return ("data_batch_3", "not the dict")
    if case == "bad_pixels":
        entry[b"data"] = entry[b"data"].reshape(-1)[:100]
        dump(target, entry)
        return ("data_batch_3", "'data'", "N×3072")
    if case == "float_pixels":
        entry[b"data"] = entry[b"data"].astype(np.float32)
        dump(target, entry)
        return ("data_batch_3", "'data'", "float32")
    if case == "no_data_key":
        del entry[b"data"]
        dump(target, entry)
        return ("data_batch_3", "'data'", "keys")
    if case == "labels_short":
        entry[b"labels"] = entry[b"labels"][:-1]
        dump(target, entry)
        return ("data_batch_3", "'labels'", "one integer label per row")
    if case == "label_out_of_range":
        entry[b"labels"] = [12] * len(entry[b"labels"])
        dump(target, entry)
        return ("data_batch_3", "'labels'", "label 12", "0..9")
    if case == "missing_meta":
        (folder / "batches.meta").unlink()
        return ("holds no cifar-10-batches-py",)  # the batch folder is looked up by its meta file
    if case == "meta_without_names":
        dump(folder / "batches.meta", {b"num_vis": 3072})
        return ("batches.meta", "'label_names'")
    raise AssertionError(case)


HOSTILE = ["missing_batch", "fifo_batch", "truncated", "not_a_pickle", "code_in_pickle", "a_list", "bad_pixels",
           "float_pixels", "no_data_key", "labels_short", "label_out_of_range", "meta_without_names"]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_damaged_cifar_folder_exits_2_naming_the_file(cli, tmp_path, case):
    root = write_cifar10(tmp_path / "data", per_batch=2)
    mentions = _break(case, root / "cifar-10-batches-py", tmp_path)
    # a FIFO could block a read forever: that case runs in a subprocess with a time limit
    run = cli if case != "fifo_batch" else lambda *args: run_ganforge(*args, timeout=HANG_LIMIT)
    data = f"data={{type: cifar10, resolution: 16, root: {root}, num_classes: 10}}"
    assert_clean_failure(run("train", TINY, "--out", tmp_path / "run", *TRAIN, "--set", data), mentions=mentions)
    assert not (tmp_path / "MARKER").exists()  # the payload never ran
    prepared = run("prepare", root, "--source", "cifar10", "--resolution", "32", "--out", tmp_path / "p")
    assert_clean_failure(prepared, mentions=mentions)
    assert not (tmp_path / "MARKER").exists() and not (tmp_path / "p").exists()


def test_the_batch_folder_itself_without_its_meta_file_is_not_a_cifar_folder(cli, tmp_path):
    root = write_cifar10(tmp_path / "data", per_batch=2)
    (root / "cifar-10-batches-py" / "batches.meta").unlink()
    result = train(cli, tmp_path / "run", f"{{type: cifar10, resolution: 16, root: {root / 'cifar-10-batches-py'}, num_classes: 10}}")
    assert_clean_failure(result, mentions=("holds no cifar-10-batches-py folder and no batches.meta",))
    result = train(cli, tmp_path / "run", f"{{type: cifar10, resolution: 16, root: {root}, num_classes: 10}}")
    assert_clean_failure(result, mentions=("batches.meta", "missing"))


@pytest.mark.parametrize("case", ["no_root", "missing_folder", "a_file", "empty_folder", "wrong_num_classes",
                                  "cifar100_folder"])
def test_bad_cifar_settings_exit_2(cli, c10, tmp_path, case):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    data, mentions = {
        "no_root": ("{type: cifar10, resolution: 16, num_classes: 10}", ("data.root is not set",)),
        "missing_folder": (f"{{type: cifar10, resolution: 16, root: {tmp_path / 'nope'}, num_classes: 10}}", ("nope", "no such folder")),
        "a_file": (f"{{type: cifar10, resolution: 16, root: {tmp_path / 'file'}, num_classes: 10}}", ("file", "not a directory")),
        "empty_folder": (f"{{type: cifar10, resolution: 16, root: {tmp_path / 'empty'}, num_classes: 10}}",
                         ("empty", "no cifar-10-batches-py")),
        "wrong_num_classes": (f"{{type: cifar10, resolution: 16, root: {c10}, num_classes: 4}}", ("10 classes", "num_classes is 4")),
        "cifar100_folder": (f"{{type: cifar100, resolution: 16, root: {c10}, num_classes: 100}}", ("no cifar-100-python",)),
    }[case]
    assert_clean_failure(train(cli, tmp_path / "run", data), mentions=mentions)
