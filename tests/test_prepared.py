"""`ganforge prepare` and the `prepared` dataset: same pixels as imagefolder, resumable, exact training resume."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.components.data import prepare as prepare_module
from ganforge.components.data.prepare import list_images, prepare
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import BLUEPRINTS, TINY
from test_training import assert_identical, weights

SIZES = [(20, 12), (12, 20), (8, 8), (5, 9), (33, 17), (16, 16), (41, 40)]  # landscape, portrait, upscaled


def build(**settings):
    return default_registry().get("dataset", settings.pop("type", "prepared")).build(settings)


def make_images(root: Path) -> Path:
    """3 classes, 19 readable images of assorted sizes and modes, one zero-byte file, one corrupt file."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(["dog", "cat", "emu"]):  # not in sorted order on purpose
        folder = root / name
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(SIZES[: 7 - (label == 2) * 2]):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if i == 3:
                image = image.convert("L")
            elif i == 4:
                image = image.convert("RGBA")
            image.save(folder / f"{i:02d}.{'jpg' if i % 2 else 'png'}", quality=90)
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("data") / "train")


@pytest.fixture(scope="module")
def prepared(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "p8"
    prepare(images, out=out, resolution=8, workers=1, shard_size=8, progress=False)
    return out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_manifest_counts_classes_and_skipped_files(prepared):
    import json

    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["format"] == "ganforge-prepared" and manifest["version"] == 1
    assert manifest["resolution"] == 8 and manifest["channels"] == 3
    assert manifest["classes"] == ["cat", "dog", "emu"]
    assert manifest["images"] == 19 and manifest["source_files"] == 21
    assert [s["count"] for s in manifest["shards"]] == [7, 7, 5]  # 8 files per shard, one bad in each of two
    assert manifest["skipped_count"] == 2
    assert [s["path"] for s in manifest["skipped"]] == ["cat/empty.png", "dog/broken.jpg"]
    for shard in manifest["shards"]:
        array = np.load(prepared / shard["images"], mmap_mode="r")
        assert array.dtype == np.uint8 and array.shape == (shard["count"], 3, 8, 8)
        assert np.load(prepared / shard["labels"]).dtype == np.int64


def test_pixels_and_order_equal_imagefolder(images, prepared):
    # imagefolder (torchvision Resize + CenterCrop + ToTensor + Normalize) read file by file, bad
    # files left out: the same images, labels and order. The uint8 pixels are compared exactly
    # (imagefolder's floats are k/127.5 - 1 up to rounding, so round((x + 1) * 127.5) recovers k);
    # the floats agree to 1e-6, not bit for bit, because imagefolder computes (k/255 - 0.5)/0.5 and
    # prepared k/127.5 - 1: the same number, rounded differently in float32.
    reference = build(type="imagefolder", root=str(images), resolution=8, num_classes=3, flip=False).folder
    expected = []
    for i in range(len(reference)):
        try:
            expected.append(reference[i])
        except OSError:
            continue
    data = build(root=str(prepared), resolution=8, num_classes=3, flip=False)
    assert len(data) == len(expected) == 19
    for i, (image, label) in enumerate(expected):
        ours, our_label = data[i]
        assert ours.dtype == torch.float32 and our_label.dtype == torch.int64 and int(our_label) == label
        assert torch.equal(((ours + 1) * 127.5).round(), ((image + 1) * 127.5).round())
        assert torch.allclose(ours, image, atol=1e-6, rtol=0)


def test_getitems_equals_stacked_getitem_with_and_without_flip(prepared):
    indices = [18, 0, 7, 7, 3, 12, 8, 14]  # across all shards, repeated, unsorted
    for flip in (False, True):
        data = build(root=str(prepared), resolution=8, flip=flip)
        torch.manual_seed(5)
        batch = data.__getitems__(indices)
        torch.manual_seed(5)
        single = [data[i] for i in indices]
        assert torch.equal(torch.stack([x for x, _ in batch]), torch.stack([x for x, _ in single]))
        assert torch.equal(torch.stack([y for _, y in batch]), torch.stack([y for _, y in single]))


def test_flips_happen_and_replay_under_a_seed(prepared):
    plain = build(root=str(prepared), resolution=8, flip=False)
    flipping = build(root=str(prepared), resolution=8, flip=True)
    torch.manual_seed(0)
    first = [flipping[i][0] for i in range(len(flipping))]
    torch.manual_seed(0)
    again = [flipping[i][0] for i in range(len(flipping))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    mirrored = [torch.equal(x, plain[i][0].flip(-1)) for i, x in enumerate(first)]
    unchanged = [torch.equal(x, plain[i][0]) for i, x in enumerate(first)]
    assert any(mirrored) and any(unchanged) and all(m or u for m, u in zip(mirrored, unchanged))


def test_dataset_pickles_and_loads_in_workers(prepared):
    from torch.utils.data import DataLoader

    data = build(root=str(prepared), resolution=8, flip=False)
    data[0]  # opens a memmap; pickling must drop it
    clone = pickle.loads(pickle.dumps(data))
    assert torch.equal(clone[5][0], data[5][0])
    batches = [torch.cat([x for x, _ in DataLoader(data, batch_size=4, num_workers=workers)])
               for workers in (0, 2)]
    assert torch.equal(*batches)


def test_rerun_resumes_and_skips_complete_shards(images, prepared, tmp_path, monkeypatch):
    out = tmp_path / "p8"
    prepare(images, out=out, resolution=8, workers=1, shard_size=8, progress=False)
    assert folder_bytes(out) == folder_bytes(prepared)
    # An interrupted run: shard 1's arrays written, its record and the manifest not yet.
    (out / "shard-00001.json").unlink()
    (out / "manifest.json").unlink()
    kept = {name: (out / name).stat().st_mtime_ns for name in ("images-00000.npy", "images-00002.npy")}
    decoded = []
    real = prepare_module._decode_chunk
    monkeypatch.setattr(prepare_module, "_decode_chunk", lambda chunk: decoded.append(len(chunk.files)) or real(chunk))
    prepare(images, out=out, resolution=8, workers=1, progress=False)  # the shard size is the folder's
    assert sum(decoded) == 8  # only shard 1's files
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert folder_bytes(out) == folder_bytes(prepared)


def test_parallel_workers_write_identical_bytes(images, prepared, tmp_path):
    prepare(images, out=tmp_path / "p8", resolution=8, workers=2, shard_size=8, progress=False)
    assert folder_bytes(tmp_path / "p8") == folder_bytes(prepared)


def test_rerun_with_other_settings_or_changed_files_is_refused(images, tmp_path):
    root = make_images(tmp_path / "train")
    out = tmp_path / "p"
    prepare(root, out=out, resolution=8, workers=1, shard_size=8, progress=False)
    with pytest.raises(GanforgeError, match=r"other settings \(resolution 8 there, 16 now\)"):
        prepare(root, out=out, resolution=16, workers=1, shard_size=8, progress=False)
    Image.new("RGB", (9, 9)).save(root / "emu" / "new.png")
    with pytest.raises(GanforgeError, match="image files under DATA_ROOT changed"):
        prepare(root, out=out, resolution=8, workers=1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(GanforgeError, match="not a ganforge prepare folder"):
        prepare(root, out=tmp_path / "other", resolution=8, workers=1, progress=False)
    with pytest.raises(GanforgeError, match="inside DATA_ROOT"):
        prepare(root, out=root / "prepared", resolution=8, workers=1, progress=False)


def test_listing_skips_hidden_folders_and_link_loops(tmp_path):
    root = tmp_path / "train"
    for name in ("b", "a/sub", ".ganforge_stats"):
        (root / name).mkdir(parents=True)
    for name in ("b/1.png", "b/0.JPG", "a/sub/2.png", "a/.hidden.png", "a/notes.txt", ".ganforge_stats/x.png"):
        (root / name).write_bytes(b"")
    os.symlink("..", root / "a" / "sub" / "up")  # a loop back to a
    os.symlink("../..", root / "b" / "root")  # a loop back to the root
    listing = list_images(root)
    assert listing.classes == ["a", "b"]
    assert listing.files == [("a/sub/2.png", 0), ("b/0.JPG", 1), ("b/1.png", 1)]


def test_decompression_bombs_are_skipped(tmp_path, monkeypatch):
    root = tmp_path / "train"
    (root / "x").mkdir(parents=True)
    for side in (10, 40, 60):  # 100 pixels fine; 1600 over the limit (a warning); 3600 over twice (an error)
        Image.new("RGB", (side, side)).save(root / "x" / f"{side}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    manifest = prepare(root, out=tmp_path / "p", resolution=8, workers=1, progress=False)
    assert manifest["images"] == 1
    assert {s["path"]: s["error"].split(":")[0] for s in manifest["skipped"]} == {
        "x/40.png": "DecompressionBombWarning", "x/60.png": "DecompressionBombError"}


def test_mismatched_blueprint_settings_are_clear_errors(prepared, tmp_path):
    with pytest.raises(GanforgeError, match="prepared with resolution 8 but data.resolution is 16"):
        build(root=str(prepared), resolution=16)
    with pytest.raises(GanforgeError, match="prepared with channels 3 but data.channels is 1"):
        build(root=str(prepared), resolution=8, channels=1)
    with pytest.raises(GanforgeError, match="has 3 classes but data.num_classes is 1000"):
        build(root=str(prepared), resolution=8, num_classes=1000)
    tmp_path.joinpath("half").mkdir()
    with pytest.raises(GanforgeError, match="manifest.json is missing"):
        build(root=str(tmp_path / "half"), resolution=8)
    with pytest.raises(GanforgeError, match="data.root is not set"):
        build(resolution=8)


def test_cli_prepare(cli, images, tmp_path):
    result = cli("prepare", images, "--resolution", "8", "--out", tmp_path / "p", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "19 images at 8×8, 3 classes" in result.stdout and "skipped cat/empty.png" in result.stdout
    missing = cli("prepare", tmp_path / "nowhere", "--resolution", "8", "--out", tmp_path / "q")
    assert missing.exit_code == 2
    assert missing.stderr.count("\n") == 1 and "nowhere" in missing.stderr and "is not a directory" in missing.stderr
    listed = cli("components", "dataset")
    assert any(line.split()[:2] == ["dataset", "prepared"] for line in listed.stdout.splitlines())


def test_readme_override_turns_sagan_imagenet128_to_prepared(cli, images, tmp_path):
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.engine.build import build_dataset

    out = tmp_path / "p128"
    prepare(images, out=out, resolution=128, workers=1, progress=False)
    # A type change by --set replaces the data mapping, so resolution and classes are given again.
    overrides = ["data.type=prepared", f"data.root={out}", "data.resolution=128", "data.num_classes=1000"]
    blueprint = BLUEPRINTS / "sagan_imagenet128.yaml"
    result = cli("inspect", blueprint, *[a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.stderr
    assert "prepared" in result.stdout and "num_classes=1000" in result.stdout
    # With 1000 ImageNet classes it would build as is; this small set has 3.
    data = build_dataset(load_blueprint(blueprint, [*overrides, "data.num_classes=3"]), default_registry())
    assert len(data) == 19 and data[0][0].shape == (3, 128, 128)


def test_stop_and_resume_on_prepared_data_is_exact(cli, images, tmp_path):
    out = tmp_path / "p16"
    prepare(images, out=out, resolution=16, workers=1, progress=False)
    flags = ["--device", "cpu", "--set", f"data={{type: prepared, root: {out}, resolution: 16, num_classes: 3}}",
             "--set", "train.batch_size=8", "--set", "train.log_every=2", "--set", "train.sample_every=1000",
             "--set", "train.checkpoint_every=2"]

    def train(run: str, *extra: str) -> None:
        result = cli("train", TINY, "--out", tmp_path / run, *flags, *extra)
        assert result.exit_code == 0, result.stderr

    train("straight", "--steps", "4")  # 2 batches per epoch: the resume crosses epochs; flips are on
    train("split", "--steps", "2")
    train("split", "--steps", "4", "--resume")
    assert_identical(weights(tmp_path / "straight", 4), weights(tmp_path / "split", 4))


def test_measure_loader_reports_positive_rates(prepared):
    from ganforge.components.data.throughput import measure_loader

    result = measure_loader(build(root=str(prepared), resolution=8), batch_size=4, num_workers=0, batches=2,
                            warmup=1, repeats=2)
    assert result["images_per_s"] > 0 and result["batches_per_s"] > 0
    assert result["images_per_s"] == pytest.approx(4 * result["batches_per_s"])


def test_a_prepared_folder_with_classes_read_unconditionally_says_so(images, tmp_path, capsys):
    """--set data.type=prepared replaces the data mapping; a dropped num_classes must not pass silently."""
    from ganforge.components.data.prepared import prepared

    out = tmp_path / "p16w"
    prepare(images, out=out, resolution=16, workers=1, progress=False)
    prepared(root=str(out), resolution=16)
    assert "3 classes but data.num_classes is 0" in capsys.readouterr().err
    prepared(root=str(out), resolution=16, num_classes=3)
    assert "num_classes is 0" not in capsys.readouterr().err
