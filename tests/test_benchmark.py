"""`ganforge benchmark` reports one row per variant, measured in the same run."""

from __future__ import annotations

from support import TINY


def test_benchmark_rows_side_by_side(cli):
    result = cli("benchmark", TINY, "--device", "cpu", "--steps", "1", "--repeats", "2", "--warmup", "1",
                 "--set", "train.batch_size=4", "--variant", "train.batch_size=4", "--variant", "train.batch_size=8")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 × 1 steps" in lines[0] and "CPU" in lines[0]
    rows = lines[2:]
    assert [r.split()[0] for r in rows] == ["train.batch_size=4", "train.batch_size=8"]
    assert [int(r.split()[1]) for r in rows] == [4, 8]
    assert all(float(r.split()[2].replace(",", "")) > 0 for r in rows)


def test_benchmark_bad_variant_is_a_blueprint_error(cli):
    result = cli("benchmark", TINY, "--device", "cpu", "--variant", "train.batch_sise=4")
    assert result.exit_code == 2 and "train.batch_sise" in result.stderr
