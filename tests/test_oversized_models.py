"""Oversized models are refused before a weight is allocated (issue 10 §6).

The estimate comes from the meta-device plan (``ganforge.memory_estimate``); the device's free
memory is injected where a test needs a particular limit, never really imposed.
"""

from __future__ import annotations

import re
import time

import pytest
import torch
from support import TINY, assert_clean_failure

from ganforge import memory_estimate
from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.errors import GanforgeError

GB = 10**9
BOUND_S = 15  # generous: planning tiny takes well under a second on an idle machine


def limit_memory(monkeypatch: pytest.MonkeyPatch, gigabytes: float) -> None:
    monkeypatch.setattr(memory_estimate, "available_memory",
                        lambda device: (int(gigabytes * GB), f"test limit of {gigabytes:g} GB"))


def timed(cli, *args):
    start = time.monotonic()
    result = cli(*args)
    return result, time.monotonic() - start


@pytest.mark.parametrize("key", ["generator.stem.channels", "generator.latent_dim"])
def test_billion_wide_setting_is_refused_naming_the_key(cli, tmp_path, key):
    """2 TB / 4 TB of weights: one line naming the key and the estimate, not an allocation traceback."""
    result, elapsed = timed(cli, "train", TINY, "--set", f"{key}=1000000000", "--out", tmp_path / "run",
                            "--steps", "1", "--device", "cpu")
    line = assert_clean_failure(result, mentions=(key, "GB", "lower"), seconds=BOUND_S, elapsed=elapsed)
    # weights alone are 4 bytes × ~5·10^11 (stem) or 10^12 (latent) parameters: thousands of GB
    estimate = float(re.search(r"needs at least ([\d,.]+) GB", line).group(1).replace(",", ""))
    assert estimate > 2000
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_inspect_still_plans_the_billion_wide_model(cli):
    """inspect allocates nothing, so it keeps working, and fast (no power iteration on meta)."""
    result, elapsed = timed(cli, "inspect", TINY, "--set", "generator.latent_dim=1000000000", "--format", "json")
    assert result.exit_code == 0, result.output
    assert elapsed < BOUND_S
    assert '"params": 1024000001024' in result.output


@pytest.mark.parametrize("key", ["discriminator.blocks[0].channels", "generator.blocks[0].channels"])
def test_20000_channels_under_a_6_gb_limit_is_refused(cli, tmp_path, monkeypatch, key):
    """~3.6·10^9 parameters (14 GB of weights alone) do not fit in 6 GB: refused before allocating."""
    limit_memory(monkeypatch, 6)
    dotted = key.replace("[0]", ".0")
    result, elapsed = timed(cli, "train", TINY, "--set", f"{dotted}=20000", "--out", tmp_path / "run",
                            "--steps", "1", "--device", "cpu")
    line = assert_clean_failure(result, mentions=(key, "6.0 GB", "GB"), seconds=BOUND_S, elapsed=elapsed)
    assert key.split(".channels")[0] in line  # the component path is named too


def test_sample_refuses_a_checkpoint_too_big_for_this_machine(cli, tmp_path, monkeypatch):
    """A run trained on a bigger machine: restoring G checks its weights against this one's memory."""
    from ganforge.engine.checkpoints import save_checkpoint

    loaded = load_blueprint(TINY, ["generator.blocks.0.channels=20000"])
    save_checkpoint(tmp_path / "run" / "checkpoints", 1, {"blueprint": loaded.document, "generator": {},
                                                          "discriminator": {}, "ema": None}, keep=1)
    limit_memory(monkeypatch, 6)
    result, elapsed = timed(cli, "sample", tmp_path / "run", "--n", "1", "--device", "cpu",
                            "--out", tmp_path / "grid.png")
    assert_clean_failure(result, mentions=("generator.blocks[0].channels", "weights", "GB"), seconds=BOUND_S,
                         elapsed=elapsed)


def test_meta_estimate_counts_the_real_model_bytes():
    """The meta plan's bytes equal a hand count on the real (allocated) small networks."""
    assembly = assemble(load_blueprint(TINY))
    for plan in (assembly.generator, assembly.discriminator):
        network = plan.build("cpu", initialise=False)  # sizes do not depend on init
        real_params = sum(p.numel() * 4 for p in network.parameters())
        real_buffers = sum(b.numel() * b.element_size() for b in network.buffers())
        assert plan.param_bytes == real_params == 4 * plan.params
        assert plan.buffer_bytes == real_buffers
        assert memory_estimate.estimate_weights(plan).total == real_params + real_buffers

    # training: adam (2 states) on both, no EMA, fp32, micro-batch 32: weights + grads + 2 moments
    estimate = memory_estimate.estimate_training(assembly)
    g, d = assembly.generator, assembly.discriminator
    outputs = {net.role: sum(torch.Size(layer.output_shape).numel() for layer in net.layers) for net in (g, d)}
    activations = 4 * max(32 * (outputs["generator"] + outputs["discriminator"]), 64 * outputs["discriminator"])
    assert estimate.micro_batch == 32
    assert estimate.activations == activations
    assert estimate.total == 4 * (g.param_bytes + d.param_bytes) + g.buffer_bytes + d.buffer_bytes + activations


def test_the_refusal_threshold_is_the_estimate(monkeypatch):
    """Exactly the estimate passes (once per assembly and device); one byte less is refused."""
    loaded = load_blueprint(TINY)
    assembly = assemble(loaded)
    need = memory_estimate.estimate_training(assembly).total

    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: (need, "exactly enough"))
    memory_estimate.check_training(assembly, "cpu")

    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: (need - 1, "one byte short"))
    memory_estimate.check_training(assembly, "cpu")  # both networks were checked above
    with pytest.raises(GanforgeError, match="one byte short"):
        memory_estimate.check_training(assemble(loaded), "cpu")
    weights = assembly.generator.param_bytes + assembly.generator.buffer_bytes  # a restored network's need
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: (weights, "exactly the weights"))
    memory_estimate.check_weights(assembly.generator, "cpu", assembly=assembly)
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: (weights - 1, "short of weights"))
    with pytest.raises(GanforgeError, match="short of weights"):
        memory_estimate.check_weights(assembly.generator, "cpu", assembly=assembly)
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: (0, "nothing"))
    memory_estimate.check_training(assemble(loaded), "meta")  # meta allocates nothing
    memory_estimate.check_weights(assembly.generator, "meta")


def test_available_memory_on_this_cpu_is_a_positive_figure():
    available, source = memory_estimate.available_memory("cpu")
    assert available is not None and available > 0 and source
