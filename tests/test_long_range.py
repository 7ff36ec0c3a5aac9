"""The long_range benchmark: distant parts that agree, and the Inception-free metrics that check them."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import BLUEPRINTS

LONG_RANGE = (BLUEPRINTS / "long_range32.yaml").resolve()


def build(**settings_):
    return default_registry().get("dataset", "long_range").build({"resolution": 32, **settings_})


def metric(name: str, **data_settings):
    from ganforge.blueprint.schema import DataSpec

    data = DataSpec(type="long_range", resolution=32, **data_settings)
    return default_registry().get("metric", name).build({}).bind(data=data)


def independent(ds, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images whose parts take independent uniform (colour, shape), and their true part codes."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(ds.combinations, (n, ds.parts), generator=gen)
    images = torch.stack([ds.render([(int(c) // ds.shapes, int(c) % ds.shapes) for c in row], generator=gen)
                          for row in codes])
    return images, codes


@st.composite
def long_range_settings(draw):
    resolution = draw(st.sampled_from([16, 24, 32, 48]))
    part_size = draw(st.integers(4, resolution // 2))
    margin = draw(st.integers(0, (resolution // 2 - part_size) // 2))
    colours = draw(st.integers(2, 6))
    return dict(resolution=resolution, part_size=part_size, margin=margin, colours=colours,
                shapes=draw(st.integers(1, 4)), parts=draw(st.sampled_from([2, 4])),
                noise=draw(st.floats(0.0, 0.3)), seed=draw(st.integers(0, 2**31)),
                num_classes=draw(st.sampled_from([0, colours])), size=8)


@settings(max_examples=20, deadline=None)
@given(long_range_settings())
def test_parts_are_far_apart_and_real_images_always_agree(kw):
    ds = build(**kw)
    r, p = kw["resolution"], kw["part_size"]
    centres = [(top + p / 2, left + p / 2) for top, left in ds.origins]
    assert len(centres) == kw["parts"]
    for a, b in itertools.combinations(centres, 2):
        assert math.dist(a, b) >= r / 2
    for top, left in ds.origins:
        assert 0 <= top and top + p <= r and 0 <= left and left + p <= r
    detector = ds.detector()
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, r, r) and image.dtype == torch.float32 and label.dtype == torch.int64
        assert image.min() >= -1 and image.max() <= 1
        colour, shape = ds.attributes(i)
        assert int(label) == (colour if kw["num_classes"] else 0)
        codes = detector(image[None])[0]
        assert codes.tolist() == [float(colour * ds.shapes + shape)] * kw["parts"]


def test_items_are_deterministic_from_seed():
    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    assert torch.equal(a[5][0], b[5][0])
    assert not torch.equal(a[5][0], c[5][0])
    counts = torch.bincount(torch.tensor([a.attributes(i)[0] * a.shapes + a.attributes(i)[1] for i in range(800)]))
    assert counts.numel() == a.combinations and counts.min() > 60   # all combinations, roughly uniform


@pytest.mark.parametrize("bad, message", [({"part_size": 10, "margin": 4}, "half the resolution"),
                                          ({"channels": 1}, "channels: 3"),
                                          ({"num_classes": 3}, "num_classes must be 0")])
def test_impossible_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        build(**bad)


def test_consistency_is_one_on_real_data_and_coverage_complete():
    ds = build(size=400)
    consistency, coverage = metric("consistency", size=400), metric("combination_coverage", size=400)
    codes = consistency.detector(torch.stack([ds[i][0] for i in range(len(ds))]))
    assert consistency.compute(real=None, fake=codes) == {"consistency": 1.0}
    # 400 draws from 8 equally likely combinations miss one with probability < 8·(7/8)^400 ≈ 1e-22
    assert coverage.compute(real=None, fake=codes) == {"combination_coverage": 1.0}


@pytest.mark.parametrize("parts, colours, shapes", [(2, 4, 2), (2, 2, 1), (4, 2, 1)])
def test_consistency_is_chance_on_independent_parts(parts, colours, shapes):
    ds = build(parts=parts, colours=colours, shapes=shapes)
    consistency = metric("consistency", parts=parts, colours=colours, shapes=shapes)
    n = 1000
    images, truth = independent(ds, n, seed=parts * 10 + colours)
    value = consistency.compute(real=None, fake=consistency.detector(images))["consistency"]
    chance = (1 / (colours * shapes)) ** (parts - 1)
    assert value == pytest.approx((truth == truth[:, :1]).all(1).double().mean().item())  # decoded exactly
    assert abs(value - chance) <= 4 * math.sqrt(chance * (1 - chance) / n)


def test_combination_coverage_counts_only_combinations_drawn_consistently():
    ds = build()                                        # 4 colours × 2 shapes = 8 combinations
    coverage = metric("combination_coverage")
    gen = torch.Generator().manual_seed(0)
    shown = [0, 1, 2, 5, 5, 0]                          # 4 distinct combinations, all parts agreeing
    rows = [[c, c] for c in shown] + [[7, 3], [6, 4]]   # 7, 6, 3, 4 only in images whose parts disagree
    images = torch.stack([ds.render([(c // 2, c % 2) for c in row], generator=gen) for row in rows])
    assert coverage.compute(real=None, fake=coverage.detector(images)) == {"combination_coverage": 4 / 8}


def test_the_former_name_coverage_warns_once_and_gives_the_same_value(capsys):
    from ganforge.blueprint.schema import DataSpec
    from ganforge.registry import BUILTIN_PACKAGES, Registry

    fresh = Registry(builtin_packages=BUILTIN_PACKAGES)  # nothing warned yet
    data = DataSpec(type="long_range", resolution=32)
    codes = torch.tensor([[0, 0], [3, 3], [3, 1]])      # combinations 0 and 3 drawn with agreeing parts: 2 of 8
    capsys.readouterr()
    first = fresh.get("metric", "coverage").build({}).bind(data=data, registry=fresh)
    second = fresh.get("metric", "coverage")
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and "metric 'coverage' was renamed to 'combination_coverage'" in err
    assert second.obj is fresh.get("metric", "combination_coverage").obj
    new = fresh.get("metric", "combination_coverage").build({}).bind(data=data, registry=fresh)
    assert first.compute(real=None, fake=codes) == new.compute(real=None, fake=codes) == {"combination_coverage": 2 / 8}


def test_metrics_refuse_other_data():
    from ganforge.blueprint.schema import DataSpec

    data = DataSpec(type="procedural", resolution=16, num_classes=4)
    for name in ("consistency", "combination_coverage"):
        component = default_registry().get("metric", name).build({})
        assert component.needs_inception_features is False
        with pytest.raises(GanforgeError, match=f"metric {name} scores the built-in long_range data.*'procedural'"):
            component.bind(data=data)


def test_evaluate_cli_needs_no_inception(cli, tmp_path, no_inception, monkeypatch):
    out = tmp_path / "run"
    trained = cli("train", LONG_RANGE, "--out", out, "--steps", "2", "--device", "cpu", "--set", "train.batch_size=4",
                  "--set", "data.size=16", "--set", "train.sample_every=1000")
    assert trained.exit_code == 0, trained.stderr
    result = cli("evaluate", out, "--metrics", "consistency,combination_coverage", "--n", "40", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "consistency: " in result.stdout and "combination_coverage: " in result.stdout
    assert "analytic long_range detector" in result.stdout and "none needed" in result.stdout
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["consistency"] <= 1.0 and 0.0 <= record["combination_coverage"] <= 1.0
    # The former name `coverage` still works: one deprecation line, the same value under the new key.
    monkeypatch.setattr(default_registry(), "_warned", set())  # as in a fresh process
    old = cli("evaluate", out, "--metrics", "coverage,consistency", "--n", "40", "--device", "cpu")
    assert old.exit_code == 0, old.stderr
    assert old.stderr.count("deprecated") == 1
    assert "metric 'coverage' was renamed to 'combination_coverage'" in old.stderr
    again = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["combination_coverage"] == record["combination_coverage"] and "coverage" not in again


def test_evaluate_cli_names_wrong_data(cli, tmp_path):
    from support import TINY

    out = tmp_path / "run"
    trained = cli("train", TINY, "--out", out, "--steps", "1", "--device", "cpu", "--set", "train.batch_size=4",
                  "--set", "data.size=16", "--set", "train.sample_every=1000")
    assert trained.exit_code == 0, trained.stderr
    result = cli("evaluate", out, "--metrics", "consistency", "--n", "8", "--device", "cpu")
    assert result.exit_code == 2 and "long_range" in result.stderr and "procedural" in result.stderr
