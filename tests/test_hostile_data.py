"""Hostile data folders (issue 10): cache folders in DATA_ROOT, decompression bombs, empty files,
symlink loops, and `evaluate` rejecting a bad --reference before it loads or generates anything."""

from __future__ import annotations

import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.registry import default_registry
from support import TINY, assert_clean_failure
from test_data import make_folder
from test_sample_evaluate import FAST

EVALUATE = ("--n", "8", "--metrics", "fid", "--device", "cpu", "--batch-size", "8")


def png_header(width: int, height: int) -> bytes:
    """A 1-bit PNG claiming ``width``×``height`` pixels, a few dozen bytes on disk (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def folder_data(root: Path, **settings):
    return default_registry().get("dataset", "imagefolder").build(
        {"root": str(root), "resolution": 8, "num_classes": 2, "flip": False, **settings})


def train(cli, root: Path, out: Path):
    return cli("train", TINY, "--out", out, "--steps", "1", *FAST, "--set",
               "data={type: imagefolder, root: %s, resolution: 16, num_classes: 2}" % root)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A one-step run trained on a 2-class folder of 8 small PNGs: (data root, run folder)."""
    from click.testing import CliRunner

    from ganforge.cli import cli

    base = tmp_path_factory.mktemp("hostile")
    root = make_folder(base / "train")
    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(base / "run"), "--steps", "1", *FAST, "--set",
                                      "data={type: imagefolder, root: %s, resolution: 16, num_classes: 2}" % root])
    assert result.exit_code == 0, result.stderr
    return root, base / "run"


# --- §1: the reference-statistics cache in DATA_ROOT is not a class ------------------------------------------------
def test_evaluate_then_train_then_evaluate_on_one_folder(cli, folder_run, stand_in, tmp_path):
    root, run = folder_run
    first = cli("evaluate", run, *EVALUATE, "--inception", stand_in)
    assert first.exit_code == 0, first.stderr
    assert (root / ".ganforge_stats").is_dir() and list((root / ".ganforge_stats").glob("ref-*.npz"))
    again = train(cli, root, tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    second = cli("evaluate", tmp_path / "again", *EVALUATE, "--inception", stand_in)
    assert second.exit_code == 0, second.stderr
    assert "8 of 8 images" in second.stdout and "unreadable" not in second.stdout


# --- §3a: decompression bombs are unreadable images, skipped and counted -------------------------------------------
@pytest.mark.parametrize("case", ["bomb", "pil_warning", "max_pixels"])
def test_oversized_images_are_skipped_and_counted(tmp_path, monkeypatch, case):
    root = make_folder(tmp_path / "train")
    settings = {}
    if case == "bomb":  # 30000² = 9e8 pixels: PIL raises DecompressionBombError (over 2 × MAX_IMAGE_PIXELS)
        (root / "cat" / "big.png").write_bytes(png_header(30000, 30000))
    elif case == "pil_warning":  # between 1× and 2× PIL's limit: PIL only warns, and would decode it
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
        Image.new("RGB", (20, 20)).save(root / "cat" / "big.png")
    else:  # over our own data.max_pixels, under PIL's limit
        settings["max_pixels"] = 1000
        Image.new("RGB", (40, 40)).save(root / "cat" / "big.png")
    filters = list(warnings.filters)
    data = folder_data(root, **settings)
    assert len(data) == 9
    skipped = sum(int(data[i][2]) for i in range(len(data)))
    assert skipped >= 1
    assert warnings.filters == filters  # our loader changes the warning filters only while it reads


# --- §3c: a directory symlink loop adds nothing ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["training", "reference"])
def test_symlink_loops_are_visited_once(tmp_path, where):
    from ganforge.evaluation import check_reference

    root = make_folder(tmp_path / "train")
    os.symlink("..", root / "cat" / "loop")  # cat/loop/cat/loop/... back to the root
    os.symlink("../cat", root / "dog" / "also_cat")  # a second path to an already listed folder
    if where == "training":
        assert len(folder_data(root)) == 8
    else:
        assert len(check_reference(str(root))) == 8


# --- §3b: evaluate --reference DIR skips and counts unreadable files -----------------------------------------------
def test_evaluate_reference_with_empty_and_bomb_files(cli, folder_run, stand_in, tmp_path):
    _, run = folder_run
    ref = make_folder(tmp_path / "ref")
    (ref / "cat" / "empty.png").write_bytes(b"")
    (ref / "dog" / "bomb.png").write_bytes(png_header(30000, 30000))
    result = cli("evaluate", run, *EVALUATE, "--inception", stand_in, "--reference", ref)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output
    assert "8 of 10 images" in result.stdout and "2 unreadable files skipped" in result.stdout


# --- §8 and §3b: a bad --reference, metric or Inception file fails before the checkpoint is loaded ------------------
def _hostile_reference(tmp_path: Path, case: str) -> tuple[list[str], tuple[str, ...]]:
    ref = tmp_path / "ref"
    if case == "missing":
        return ["--reference", str(ref)], ("no such folder",)
    if case.endswith(".npz"):
        if case == "garbage.npz":
            (tmp_path / case).write_bytes(b"not a zip file")
        elif case == "wrong_arrays.npz":
            np.savez(tmp_path / case, something=np.zeros(3))
        else:  # mean and covariance only, but KID needs features
            np.savez(tmp_path / case, mu=np.zeros(32), sigma=np.eye(32))
            return ["--reference", str(tmp_path / case), "--metrics", "kid"], ("needs reference features",)
        return ["--reference", str(tmp_path / case)], (case,)
    ref.mkdir()
    if case == "only_empty_file":
        (ref / "a.png").write_bytes(b"")
    elif case == "only_bomb":
        (ref / "a.png").write_bytes(png_header(30000, 30000))
    elif case == "only_hidden":
        Image.new("RGB", (8, 8)).save(ref / ".hidden.png")
    return ["--reference", str(ref)], (str(ref),)


@pytest.mark.parametrize("case", ["missing", "empty_folder", "only_empty_file", "only_bomb", "only_hidden",
                                  "garbage.npz", "wrong_arrays.npz", "stats_only_for_kid.npz",
                                  "unknown_metric", "missing_inception"])
def test_evaluate_rejects_bad_input_before_loading_the_run(cli, stand_in, tmp_path, monkeypatch, case):
    import ganforge.engine.restore as restore_module

    def too_late(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the input was checked")

    monkeypatch.setattr(restore_module, "restore", too_late)
    if case == "unknown_metric":
        args, mentions = ["--metrics", "fdi"], ("fid",)
    elif case == "missing_inception":
        args, mentions = ["--inception", str(tmp_path / "nope.pt")], ("nope.pt",)
    else:
        args, mentions = _hostile_reference(tmp_path, case)
    options = ["--inception", str(stand_in), "--metrics", "fid", "--device", "cpu"]
    start = time.perf_counter()
    result = cli("evaluate", tmp_path / "no_run_needed", *options, *args)
    assert_clean_failure(result, mentions=mentions, seconds=10, elapsed=time.perf_counter() - start)
