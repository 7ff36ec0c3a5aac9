"""Issue 12 §3: command-line details a new user trips over.

Key typos suggest the key meant, sample grids have full rows with one class per column, the
components listing has a header, small evaluations say why their numbers wobble, γ's plot has one
home, a channel mismatch names the head, and a flat folder under a conditional blueprint says how
to train unconditionally.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from support import BLUEPRINTS, TINY, assert_clean_failure

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000"]


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """tiny.yaml (4 classes, attention at 8×8) trained 2 steps, γ logged every step."""
    from click.testing import CliRunner

    from ganforge.cli import cli

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(out), "--steps", "2", *FAST])
    assert result.exit_code == 0, result.stderr
    return out


# -- 1. unknown keys suggest the closest known key, in every section ----------------------------------------------
@pytest.mark.parametrize("setting, wrong, meant", [
    ("train.step=3", "train.step", "train.steps"),
    ("trian.steps=3", "trian", "train"),
    ("optimizers.generatr=adam", "optimizers.generatr", "optimizers.generator"),
    ("generator.laten_dim=8", "generator.laten_dim", "generator.latent_dim"),
    ("generator.head.chanels=3", "generator.head.chanels", "generator.head.channels"),
    ("generator.blocks.0.chanels=32", "generator.blocks[0].chanels", "generator.blocks[0].channels"),
    ("data.resolutoin=16", "data.resolutoin", "data.resolution"),
])
def test_unknown_key_suggests_the_key_meant(cli, setting, wrong, meant):
    line = assert_clean_failure(cli("inspect", TINY, "--set", setting), mentions=(f"{wrong}: unknown key",))
    assert f"did you mean '{meant}'" in line, line


def test_unknown_key_with_nothing_close_has_no_suggestion(cli):
    line = assert_clean_failure(cli("inspect", TINY, "--set", "train.zzzzzz=1"), mentions=("unknown key",))
    assert "did you mean" not in line


# -- 2. grids: full rows, one class per column ---------------------------------------------------------------------
@pytest.mark.parametrize("n, columns", [(32, 8), (64, 8), (16, 4), (12, 4), (10, 5), (7, 7), (2, 2), (1, 1),
                                        (34, 6), (97, 10)])
def test_grid_columns_keep_rows_full(n, columns):
    from ganforge.engine.samples import grid_columns

    assert grid_columns(n) == columns
    # full rows, except where the only full-row shape is a very long strip (34 = 17×2, 97 prime)
    assert n % columns == 0 or n in (34, 97)


def test_grid_columns_prefer_one_column_per_class_when_that_is_regular():
    from ganforge.engine.samples import grid_columns

    assert grid_columns(40, num_classes=10) == 10  # 10×4 shows every class
    assert grid_columns(32, num_classes=10) == 8  # 10 does not divide 32: full rows first
    assert grid_columns(64, num_classes=4) == 8  # 8 columns, classes 0 1 2 3 0 1 2 3


def test_column_classes_keep_the_latents():
    from ganforge.sampling.generation import latent_batches

    plain = list(latent_batches(n=32, latent_dim=4, num_classes=4, batch_size=12, seed=3))
    laid_out = list(latent_batches(n=32, latent_dim=4, num_classes=4, batch_size=12, seed=3, columns=8))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain, laid_out))  # same images, other classes
    labels = torch.cat([labels for _, labels in laid_out]).view(4, 8)  # rows × columns
    assert torch.equal(labels, (torch.arange(8) % 4).expand(4, 8))


def test_sample_32_is_an_8_by_4_grid_with_one_class_per_column(cli, run, tmp_path, monkeypatch):
    import ganforge.sampling.generation as generation

    seen = []
    original = generation.latent_batches

    def recording(**kwargs):
        for z, labels in original(**kwargs):
            seen.append(labels)
            yield z, labels

    monkeypatch.setattr(generation, "latent_batches", recording)
    result = cli("sample", run, "--n", "32", "--device", "cpu", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.stderr
    # 16×16 images, padding 1: 8 columns × 4 rows (the old layout was 5 × 7 with 3 empty cells)
    assert png_size(tmp_path / "grid.png") == (8 * 17 + 1, 4 * 17 + 1)
    labels = torch.cat(seen).view(4, 8)
    assert all(len(set(labels[:, c].tolist())) == 1 for c in range(8)), labels
    assert set(labels[0].tolist()) == {0, 1, 2, 3}


def test_training_grid_uses_the_same_layout(tmp_path):
    from ganforge.engine.samples import save_grid

    save_grid(torch.zeros(64, 3, 16, 16), tmp_path / "train.png")
    assert png_size(tmp_path / "train.png") == (8 * 17 + 1, 8 * 17 + 1)


# -- 3. components listing has a header ------------------------------------------------------------------------------
def test_components_listing_has_an_aligned_header(cli):
    from ganforge.registry import default_registry

    result = cli("components", "layer")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "ORIGIN", "SUMMARY"]
    components = {c.name: c for c in default_registry().list("layer")}
    assert len(rows) == len(components)
    for row in rows:
        name = row[header.index("NAME"):].split()[0]
        component = components[name]
        assert row.startswith(component.kind)
        assert row[header.index("ORIGIN"):].startswith(component.origin)
        assert row[header.index("SUMMARY"):] == component.summary


# -- 4. small evaluations: a warning, and why kid_std is 0 ---------------------------------------------------------
def test_small_evaluation_warns_and_explains_a_zero_kid_std(cli, run, stand_in):
    result = cli("evaluate", run, "--n", "16", "--metrics", "fid,kid", "--inception", stand_in, "--device", "cpu",
                 "--batch-size", "8")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "FID and KID" in warnings[0] and "biased" in warnings[0] and "10,000" in warnings[0]
    assert "--n 16" in warnings[0]
    (kid_std,) = [line for line in result.stdout.splitlines() if line.startswith("kid_std:")]
    assert kid_std.startswith("kid_std: 0.0000 (one subset of 16 images")
    assert "--n ≥ 2×subset size (2000)" in kid_std


def test_small_sample_warning_only_for_fid_and_kid_below_10k():
    from ganforge.evaluation import small_sample_warning

    assert small_sample_warning(["fid", "pr"], 500) == (
        "warning: FID is biased below about 10,000 images (--n 500); compare only numbers computed with the same --n")
    assert small_sample_warning(["fid", "kid"], 10_000) is None
    assert small_sample_warning(["pr"], 16) is None


def test_kid_notes_only_a_single_subset():
    from ganforge.components.metrics.kid import KID

    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    one = KID()
    out = one.compute(real=real, fake=fake)
    assert out["kid_std"] == 0.0 and "one subset of 16 images" in one.notes["kid_std"]
    spread = KID(subsets=5, subset_size=4)
    out = spread.compute(real=real, fake=fake)
    assert out["kid_std"] > 0 and spread.notes == {}


# -- 5. γ's plot has one home: RUN/plots/gamma.png ------------------------------------------------------------------
def test_attention_with_out_writes_gamma_where_plot_does(cli, run, tmp_path):
    figure = tmp_path / "elsewhere" / "figure.png"
    result = cli("attention", run, "--n", "1", "--out", figure)
    assert result.exit_code == 0, result.stderr
    assert [Path(line) for line in result.stdout.splitlines()] == [figure, run / "plots" / "gamma.png"]
    assert not (run / "gamma.png").exists()
    plotted = cli("plot", run)
    assert plotted.exit_code == 0, plotted.stderr
    assert run / "plots" / "gamma.png" in [Path(line) for line in plotted.stdout.splitlines()]


# -- 6. a channel mismatch names the head --------------------------------------------------------------------------
def test_channel_mismatch_names_the_head_channels(cli):
    line = assert_clean_failure(cli("inspect", TINY, "--set", "generator.head.channels=1"),
                                mentions=("generator.head.channels:", "produces 1×16×16 images", "3×16×16",
                                          "set generator.head.channels to 3"))
    assert "generator.blocks" not in line


def test_resolution_mismatch_still_names_the_blocks(cli):
    assert_clean_failure(cli("inspect", TINY, "--set", "data.resolution=64"),
                         mentions=("generator.blocks:", "produces 3×16×16 images but the data is 3×64×64"))


# -- 7. a flat folder under a conditional blueprint ----------------------------------------------------------------
def test_flat_folder_with_a_conditional_blueprint_says_how_to_train_unconditionally(cli, tmp_path):
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(flat / f"{i}.png")
    result = cli("train", BLUEPRINTS / "sagan_imagenet128.yaml", "--out", tmp_path / "run", "--device", "cpu",
                 "--set", f"data.root={flat}")
    assert_clean_failure(result, mentions=("no class sub-folders", "--set data.num_classes=0"))
