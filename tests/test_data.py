"""Datasets and the resumable data stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from ganforge.engine.data_stream import DataStream
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import TINY


def build(name: str, **settings):
    return default_registry().get("dataset", name).build(settings)


@given(st.sampled_from([4, 9, 16, 33]), st.integers(0, 100))
@settings(max_examples=10, deadline=None)
def test_procedural_is_deterministic_and_in_range(resolution, index):
    data = build("procedural", resolution=resolution, num_classes=5, size=101, seed=3)
    image, label = data[index]
    again, _ = build("procedural", resolution=resolution, num_classes=5, size=101, seed=3)[index]
    assert image.shape == (3, resolution, resolution) and torch.equal(image, again)
    assert image.min() >= -1 and image.max() <= 1 and int(label) == index % 5
    other, _ = build("procedural", resolution=resolution, num_classes=5, size=101, seed=4)[index]
    assert not torch.equal(image, other)


def make_folder(root, *, corrupt: int = 0):
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        folder = root / cls
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20, 12), colour).save(folder / f"{i}.png")
    for i in range(corrupt):
        (root / "cat" / f"bad{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def test_imagefolder_labels_resize_and_range(tmp_path):
    data = build("imagefolder", root=str(make_folder(tmp_path / "train")), resolution=8, num_classes=2, flip=False)
    image, label, skipped = data[0]
    assert image.shape == (3, 8, 8) and int(label) == 0 and int(skipped) == 0
    assert torch.allclose(image[0], torch.ones(8, 8)) and torch.allclose(image[2], -torch.ones(8, 8))
    assert int(data[len(data) - 1][1]) == 1


def test_imagefolder_class_count_must_match(tmp_path):
    with pytest.raises(GanforgeError, match="2 class folders but data.num_classes is 1000"):
        build("imagefolder", root=str(make_folder(tmp_path / "train")), resolution=8, num_classes=1000)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    data = build("imagefolder", root=str(make_folder(tmp_path / "train", corrupt=2)), resolution=8, num_classes=2)
    stream = DataStream(data, batch_size=len(data), seed=0)
    images, labels = stream.next()
    assert images.shape[0] == len(data) and stream.skipped >= 2


def test_too_many_corrupt_images_stop_training(cli, tmp_path):
    root = make_folder(tmp_path / "train", corrupt=3)
    result = cli("train", TINY, "--out", tmp_path / "run", "--device", "cpu", "--steps", "2",
                 "--set", "data={type: imagefolder, root: " + str(root) + ", resolution: 16, num_classes: 2, "
                 "max_skipped: 0}", "--set", "train.batch_size=10")
    assert result.exit_code == 2, result.stderr
    assert "unreadable images skipped" in result.stderr and "data.max_skipped" in result.stderr


def test_npz_dataset(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(6) % 2)
    data = build("npz", root=str(tmp_path / "d.npz"), resolution=8, num_classes=2)
    image, label = data[1]
    assert image.shape == (3, 8, 8) and int(label) == 1
    assert torch.allclose(image, torch.from_numpy(images[1]).permute(2, 0, 1).float() / 127.5 - 1)
    with pytest.raises(GanforgeError, match="data.resolution"):
        build("npz", root=str(tmp_path / "d.npz"), resolution=16)


def test_stream_resumes_at_the_same_batch_and_ranks_are_disjoint():
    data = build("procedural", resolution=4, num_classes=3, size=30, seed=0)
    stream = DataStream(data, batch_size=4, seed=1)
    for _ in range(9):  # crosses an epoch boundary (7 batches per epoch)
        stream.next()
    state = stream.state()
    expected = [stream.next()[0] for _ in range(3)]
    resumed = DataStream(data, batch_size=4, seed=1)
    resumed.restore(state)
    assert all(torch.equal(a, resumed.next()[0]) for a in expected)
    ranks = [DataStream(data, batch_size=3, seed=1, rank=r, world_size=2) for r in range(2)]
    seen = [ranks[r]._epoch_indices() for r in range(2)]
    assert not set(seen[0]) & set(seen[1])
