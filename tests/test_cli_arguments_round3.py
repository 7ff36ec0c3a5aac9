"""Issue 22, arguments: `--set` type changes, `evaluate`'s --n, --reference and --metrics, train.max_abs_loss.

Each row ends clean (``assert_clean_failure``: exit 2, one line, no traceback) and, for evaluate,
before an image is generated: ``generate`` is replaced by one that fails the test.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from support import TINY, assert_clean_failure

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000"]


# -- --set KEY.type=... replaces the section's inherited settings ------------------------------------------------

def test_set_type_drops_the_old_components_settings(cli):
    """Before: `data.size: unknown key` (procedural's size and seed kept under npz). Now npz's own key is missing."""
    result = cli("inspect", TINY, "--set", "data.type=npz")
    line = assert_clean_failure(result, mentions=("data.resolution", "missing"))
    assert "data.size" not in line and "data.seed" not in line


@pytest.mark.parametrize("order", ["type-first", "type-last"])
def test_set_type_keeps_the_keys_other_set_options_give(cli, tmp_path, order):
    archive = tmp_path / "images.npz"
    np.savez(archive, images=np.zeros((4, 16, 16, 3), dtype=np.uint8))
    settings = ["--set", f"data.root={archive}", "--set", "data.resolution=16"]
    retype = ["--set", "data.type=npz"]
    args = retype + settings if order == "type-first" else settings + retype
    result = cli("inspect", TINY, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert '"npz' in result.stdout or "npz" in result.stdout


def test_set_type_in_a_list_item_and_the_same_type_keep_settings(cli):
    from ganforge.blueprint.overrides import apply_overrides

    document = {"data": {"type": "procedural", "size": 5, "seed": 1},
                "update_rule": [{"type": "ttur", "g_lr": 1.0}, {"type": "n_critic", "d_steps": 2}]}
    same = apply_overrides(document, ["data.type=procedural"])
    assert same["data"] == {"type": "procedural", "size": 5, "seed": 1}
    changed = apply_overrides(document, ["update_rule.1.d_steps=3", "update_rule.1.type=ema", "update_rule.0.g_lr=2"])
    assert changed["update_rule"] == [{"type": "ttur", "g_lr": 2}, {"type": "ema", "d_steps": 3}]
    assert document["update_rule"][1] == {"type": "n_critic", "d_steps": 2}  # the input is not changed


def test_set_type_origins_name_set_for_what_it_dropped():
    from ganforge.blueprint.overrides import apply_overrides

    origins = {"data": "a.yaml", "data.type": "a.yaml", "data.size": "a.yaml", "train": "a.yaml"}
    apply_overrides({"data": {"type": "procedural", "size": 5}, "train": {}}, ["data.type=npz"], origins)
    assert origins == {"data": "--set", "data.type": "--set", "train": "a.yaml"}


# -- train.max_abs_loss is validated like any key ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", ".inf", ".nan", "abc", "[1]"])
def test_max_abs_loss_must_be_a_positive_finite_number(cli, value):
    result = cli("inspect", TINY, "--set", f"train.max_abs_loss={value}")
    assert_clean_failure(result, mentions=("train.max_abs_loss",))


def test_max_abs_loss_is_off_by_default():
    from ganforge.blueprint.schema import TrainSpec

    assert TrainSpec().max_abs_loss is None


# -- evaluate: --n, --reference, --metrics, refused before generating ----------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from ganforge.cli import cli

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(cli, ["train", str(TINY), "--out", str(out), "--steps", "1", *FAST])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture
def never_generate(monkeypatch):
    import ganforge.evaluation

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("evaluate generated images before refusing its arguments")

    monkeypatch.setattr(ganforge.evaluation, "generate", refuse)


def _references(root: Path) -> dict[str, Path]:
    from PIL import Image

    empty = root / "empty"
    empty.mkdir()
    one = root / "one"
    one.mkdir()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(one / "a.png")
    text = root / "notes.txt"
    text.write_text("not an archive\n")
    single_row = root / "one-row.npz"
    np.savez(single_row, features=np.zeros((1, 32)))
    return {"empty": empty, "one": one, "text": text, "single_row": single_row}


ROWS = [
    # (id, arguments after the run, words the line must name)
    ("n-zero", ["--n", "0"], ("--n 0", "at least 2")),
    ("n-negative", ["--n", "-5"], ("--n -5", "at least 2")),
    ("n-huge", ["--n", str(10**12)], ("--n 1,000,000,000,000", "memory", "at most --n")),
    ("reference-empty", ["--reference", "{empty}"], ("--reference", "no images found")),
    ("reference-one-image", ["--reference", "{one}"], ("--reference", "holds 1 image", "at least 2")),
    ("reference-text-file", ["--reference", "{text}"], ("--reference", "notes.txt", "not an .npz file")),
    ("reference-one-row", ["--reference", "{single_row}"], ("--reference", "holds 1 feature row")),
    ("metrics-unknown", ["--metrics", "fid,no_such_metric"], ("--metrics", "no_such_metric")),
    ("metrics-twice", ["--metrics", "fid,kid,fid"], ("--metrics", "fid named more than once")),
    ("metrics-twice-with-gap", ["--metrics", "kid,,kid"], ("--metrics", "kid named more than once")),
    ("metrics-none", ["--metrics", ","], ("--metrics", "at least one")),
]


@pytest.mark.parametrize("extra, mentions", [(r[1], r[2]) for r in ROWS], ids=[r[0] for r in ROWS])
def test_evaluate_refuses_bad_arguments_before_generating(cli, run, stand_in, tmp_path, never_generate,
                                                          extra, mentions):
    paths = _references(tmp_path)
    args = [a.format(**paths) for a in extra]
    defaults = {"--n": "16", "--metrics": "fid"}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    started = time.perf_counter()
    result = cli("evaluate", run, *args, "--inception", stand_in, "--device", "cpu", "--batch-size", "8")
    assert_clean_failure(result, mentions=mentions, seconds=60, elapsed=time.perf_counter() - started)
    assert "generated:" not in result.stderr


def test_huge_n_is_refused_from_the_count_alone():
    from ganforge.commands.evaluate import check_count

    started = time.perf_counter()
    with pytest.raises(Exception, match="memory"):
        check_count(10**12)
    assert time.perf_counter() - started < 0.1
    check_count(50_000)  # the standard count fits anywhere a GPU does (1.6 GiB of features)


def test_a_type_change_does_not_bring_back_keys_a_whole_section_set_dropped():
    from ganforge.blueprint.overrides import apply_overrides

    out = apply_overrides({"data": {"type": "procedural", "size": 5}},
                          ["data.root=/a", 'data={"type": "npz", "path": "p"}', "data.type=prepared"])
    assert out["data"] == {"type": "prepared"}
    out = apply_overrides({"generator": {"blocks": [{"type": "a"}, {"type": "b"}]}},
                          ["generator.blocks.1.ch=64", 'generator.blocks=[{"type": "a"}, {"type": "b"}]',
                           "generator.blocks.1.type=c"])
    assert out["generator"]["blocks"][1] == {"type": "c"}
    out = apply_overrides({"data": {"type": "procedural", "size": 5}}, ["data.root=/a", "data.type=npz"])
    assert out["data"] == {"type": "npz", "root": "/a"}  # set inside since: kept
