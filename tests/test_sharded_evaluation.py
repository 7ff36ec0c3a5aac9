"""Evaluation split across DDP processes: the same numbers as one process, and every rank does its share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import TINY
from ganforge.sharding import Shard

FAST = ["--device", "cpu", "--set", "train.batch_size=8", "--set", "data.size=64", "--set", "train.log_every=1",
        "--set", "train.sample_every=1000"]


@pytest.mark.parametrize("items,batch_size,world", [(20, 4, 2), (21, 4, 2), (8, 50, 2), (10, 3, 4), (5, 5, 3)])
def test_shards_cover_every_batch_once_in_order(items, batch_size, world):
    shards = [Shard(rank=r, world=world) for r in range(world)]
    batches = [i for s in shards for i in s.batch_range(items, batch_size)]
    assert batches == list(range(-(-items // batch_size)))  # contiguous, rank order: gathering restores order
    assert sum(s.item_count(items, batch_size) for s in shards) == items


def torchrun(*args: str, env: dict[str, str], port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_two_processes_give_one_processes_numbers_and_share_the_work(cli, stand_in, tmp_path, env, monkeypatch):
    run = tmp_path / "run"
    assert cli("train", TINY, "--out", run, "--steps", "2", *FAST).exit_code == 0
    worker = Path(__file__).with_name("ddp_eval_worker.py")
    result = torchrun(str(worker), str(run), str(stand_in), str(tmp_path), "20", "4", env=env, port=29541)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["values"] == ranks[1]["values"]  # every process returns the whole result
    # 20 images in 5 batches of 4: ranks take batches 0-2 and 3-4, of generated and reference images alike
    assert [r["counts"] for r in ranks] == [{"generated": 12, "reference": 12}, {"generated": 8, "reference": 8}]

    from ganforge.engine.restore import restore
    from ganforge.evaluation import evaluate_generator

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-single"))
    restored = restore(run, device="cpu")
    single = evaluate_generator(restored.generator, loaded=restored.loaded, metrics=["fid", "kid"], n=20,
                                inception=str(stand_in), batch_size=4, progress=False)
    for name, value in single.values.items():
        assert ranks[0]["values"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_training_under_torchrun_evaluates_on_every_rank(cli, stand_in, tmp_path, env):
    out = tmp_path / "ddp"
    result = torchrun("-m", "ganforge", "train", str(TINY), "--out", str(out), "--steps", "2", *FAST,
                      "--set", "train.eval_every=2", "--set", "train.eval_images=12",
                      "--set", f"train.eval_inception={stand_in}", "--set", "train.eval_metrics=[fid]",
                      env=env, port=29543)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if r.get("event") == "evaluation"]
    assert [r["step"] for r in logged] == [2]  # written once, by rank 0
    alone = cli("evaluate", out, "--n", "12", "--metrics", "fid", "--inception", stand_in, "--device", "cpu")
    assert alone.exit_code == 0, alone.stderr
    fid = float(next(line for line in alone.stdout.splitlines() if line.startswith("fid: ")).split()[1])
    assert logged[0]["fid"] == pytest.approx(fid, abs=1e-4)  # printed with 4 decimals


def test_the_trainers_evaluator_is_the_sharded_kind_and_a_plain_one_still_works():
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.commands.train import evaluator
    from ganforge.engine.trainer import _takes_sharded

    assert _takes_sharded(evaluator(load_blueprint(TINY, []).blueprint.train))  # so every rank evaluates
    assert not _takes_sharded(lambda network, *, loaded, device, generator_label: None)  # rank 0 alone, as before


def test_process_group_timeout_is_explicit(monkeypatch):
    from datetime import timedelta

    from ganforge.engine.distributed import process_group_timeout
    from ganforge.errors import GanforgeError

    monkeypatch.delenv("GANFORGE_DIST_TIMEOUT_S", raising=False)
    assert process_group_timeout() == timedelta(minutes=30)
    monkeypatch.setenv("GANFORGE_DIST_TIMEOUT_S", "90")
    assert process_group_timeout() == timedelta(seconds=90)
    for bad in ("0", "-3", "nan", "inf", "ten"):
        monkeypatch.setenv("GANFORGE_DIST_TIMEOUT_S", bad)
        with pytest.raises(GanforgeError, match="GANFORGE_DIST_TIMEOUT_S"):
            process_group_timeout()
