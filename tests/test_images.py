"""The one image pipeline (``ganforge.components.data.images``) that imagefolder, prepare and evaluate share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.components.data.images import (
    MAX_PIXELS, UnreadableImage, colour_mode, image_transform, load_image, open_image, resize_and_crop,
)
from ganforge.registry import default_registry

SIZES = [(8, 8), (9, 8), (8, 9), (7, 3), (3, 7), (33, 17), (17, 33), (64, 48), (100, 31), (5, 5), (16, 16), (41, 40)]


def random_image(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    bands = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode)


def torchvision_transform(resolution: int, channels: int, *, flip: bool):  # type: ignore[no-untyped-def]
    """imagefolder's transform before the pipeline was shared: torchvision's Resize + CenterCrop."""
    from torchvision import transforms

    steps = [transforms.Resize(resolution), transforms.CenterCrop(resolution)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    return transforms.Compose(steps)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("resolution", [4, 8, 16])
def test_resize_and_crop_equals_torchvision_resize_and_centre_crop(channels, resolution):
    """Training pixels did not change when imagefolder moved to ``resize_and_crop``: bit for bit, flips included."""
    mode = colour_mode(channels)
    for flip in (False, True):
        ours, theirs = image_transform(resolution, channels, flip=flip), torchvision_transform(resolution, channels,
                                                                                                 flip=flip)
        for seed, size in enumerate(SIZES):
            image = random_image(size, mode, seed)
            torch.manual_seed(seed)
            expected = theirs(image)
            torch.manual_seed(seed)
            got = ours(image)
            assert got.dtype == expected.dtype and torch.equal(got, expected), (size, mode, flip)


def test_load_image_is_open_image_then_resize_and_crop(tmp_path):
    path = tmp_path / "x.png"
    random_image((37, 21), "RGB", 0).save(path)
    pixels = load_image(str(path), resolution=8, mode="RGB")
    expected = np.asarray(resize_and_crop(open_image(path, mode="RGB"), 8), dtype=np.uint8).transpose(2, 0, 1)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 8, 8) and np.array_equal(pixels, expected)


def test_an_image_over_max_pixels_is_refused_by_both_paths_alike(tmp_path):
    """``prepare``'s ``load_image`` applies ``max_pixels`` as imagefolder's loader does (it used to skip it)."""
    (tmp_path / "cat").mkdir()
    path = tmp_path / "cat" / "big.png"
    Image.new("RGB", (40, 40)).save(path)  # 1600 pixels: under PIL's limit, over a max_pixels of 1000
    with pytest.raises(UnreadableImage) as by_open:
        open_image(path, mode="RGB", max_pixels=1000)
    with pytest.raises(UnreadableImage) as by_load:
        load_image(str(path), resolution=8, mode="RGB", max_pixels=1000)
    assert str(by_load.value) == str(by_open.value) and "data.max_pixels" in str(by_load.value)
    assert by_load.value.cause is None  # ganforge's own limit, not PIL's
    assert load_image(str(path), resolution=8, mode="RGB").shape == (3, 8, 8)  # the default limit is PIL's
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS

    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "small.png")
    data = default_registry().get("dataset", "imagefolder").build(
        {"root": str(tmp_path), "resolution": 8, "num_classes": 1, "flip": False, "max_pixels": 1000})
    assert [int(data[i][2]) for i in range(len(data))] == [1, 0]  # big.png skipped and counted, small.png read


def test_prepare_skips_an_image_over_max_pixels(tmp_path, monkeypatch):
    """The same refusal inside ``prepare``: the file is listed as skipped, under ganforge's own error."""
    from ganforge.components.data import images
    from ganforge.components.data.prepare import prepare

    (tmp_path / "train" / "x").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(tmp_path / "train" / "x" / "big.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "x" / "small.png")
    real = images.open_image
    monkeypatch.setattr(images, "open_image", lambda path, *, mode, max_pixels=MAX_PIXELS: real(path, mode=mode,
                                                                                              max_pixels=1000))
    manifest = prepare(tmp_path / "train", out=tmp_path / "p", resolution=8, workers=1, progress=False)
    assert manifest["images"] == 1
    assert [(s["path"], s["error"].split(":")[0]) for s in manifest["skipped"]] == [("x/big.png", "UnreadableImage")]
