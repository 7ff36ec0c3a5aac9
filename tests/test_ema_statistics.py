"""The EMA generator's own singular vectors, and standing batch-norm statistics.

σ of every EMA weight is checked against torch.linalg.matrix_norm of that (EMA) weight; standing
statistics against means and variances computed here from captured pre-batch-norm activations.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from support import TINY, save_torchscript, tiny_features_module


def _weights_and_vectors(network: nn.Module) -> list[tuple[torch.Tensor, _SpectralNorm]]:
    out = []
    for module in network.modules():
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations.weight
            out.append((plist.original.detach().flatten(1), plist[0]))  # tiny: no transposed convs (dim 0)
    return out


def assert_own_converged_sigma(ema: nn.Module, live: nn.Module) -> None:
    """σ = uᵀWv equals ‖W‖₂ of the EMA weight, which is not the live one."""
    apart = 0.0
    pairs = list(zip(_weights_and_vectors(ema), _weights_and_vectors(live)))
    assert pairs
    for (weight, sn), (live_weight, _) in pairs:
        sigma = torch.dot(sn._u, weight @ sn._v)
        exact = torch.linalg.matrix_norm(weight, 2)
        torch.testing.assert_close(sigma, exact, rtol=1e-5, atol=1e-6)
        apart = max(apart, float(abs(exact - torch.linalg.matrix_norm(live_weight, 2)) / exact))
    # The EMA weights are not the live ones (by 10× the tolerance above), so the check means something.
    assert apart > 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of 3 steps with a G EMA (decay 0.9), trained in-process; its folder holds checkpoints."""
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    out = tmp_path_factory.mktemp("runs") / "tiny"
    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64",
                                                  "update_rule.2={type: ema, decay: 0.9, start: 0}"],
                            placement=place_process("cpu"), out=out, data="real")
    trainer.options.steps = 3
    trainer.run()
    return trainer


def test_ema_update_copies_batch_norm_statistics_not_singular_vectors(trained):
    from ganforge.components.layers.spectral_norm import buffers_outside_spectral_norm, spectral_norm_modules

    ema_vectors = [buffer.clone() for sn in spectral_norm_modules(trained.update.ema) for buffer in sn.buffers()]
    trained.train_step()
    after = [buffer for sn in spectral_norm_modules(trained.update.ema) for buffer in sn.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(ema_vectors, after))
    live = [buffer for sn in spectral_norm_modules(trained.update.generator) for buffer in sn.buffers()]
    assert not all(torch.equal(a, b) for a, b in zip(after, live))
    statistics = list(zip(buffers_outside_spectral_norm(trained.update.ema), buffers_outside_spectral_norm(trained.update.generator)))
    assert statistics and all(torch.equal(a, b) for a, b in statistics)


def _statistics(network: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every buffer but spectral-norm u/v, by name (batch-norm means, variances and counts)."""
    return [(name, buffer) for name, buffer in network.named_buffers() if not name.endswith(("._u", "._v"))]


@pytest.mark.parametrize("buffers", ["copy", "average"])
def test_ema_buffers_are_copied_or_follow_the_decay(buffers):
    """``average``: each floating buffer is the running average written out by hand (decay 0.75, from
    step 2; copied before it, as BigGAN-PyTorch's ``utils.ema``); ``copy`` (default): the live ones."""
    from types import SimpleNamespace

    from ganforge.engine.step import GANUpdate

    torch.manual_seed(0)
    live, decay = TinyGenerator(), 0.75
    ema = copy.deepcopy(live).eval().requires_grad_(False)
    update = SimpleNamespace(ema=ema, generator=live, step=0,
                             plan=SimpleNamespace(ema_decay=decay, ema_start=2, ema_buffers=buffers))
    expected = {name: b.double().clone() for name, b in _statistics(ema)}
    for step in range(1, 5):
        with torch.no_grad():  # a training step: weights move, batch norms see a batch
            for p in live.parameters():
                p.add_(0.1 * torch.randn_like(p))
            live(torch.randn(6, 4) * step, torch.randint(0, 3, (6,)))
        update.step = step  # as GANUpdate.end_step: count the step, then update the EMA
        GANUpdate._update_ema(update)  # type: ignore[arg-type]
        for name, value in _statistics(live):
            if buffers == "average" and value.is_floating_point() and step >= 2:
                expected[name] = decay * expected[name] + (1 - decay) * value.double()
            else:
                expected[name] = value.double().clone()
    got, now = dict(_statistics(ema)), dict(_statistics(live))
    floating = [name for name in got if got[name].is_floating_point()]
    assert len(floating) == 6  # running mean and variance of three batch norms
    for name, value in got.items():
        torch.testing.assert_close(value.double(), expected[name], rtol=1e-6, atol=1e-7)
    counts = [name for name in got if name.endswith("num_batches_tracked")]
    assert len(counts) == 3 and all(got[n].dtype == torch.long and torch.equal(got[n], now[n]) for n in counts)
    # The test means something: averaged statistics are not the live ones.
    apart = max(float((got[name] - now[name]).abs().max()) for name in floating)
    assert (apart > 1e-3) if buffers == "average" else (apart == 0.0)
    # u/v: neither copied nor averaged (sampling_generator gives the EMA its own).
    vectors = [(name, b) for name, b in ema.named_buffers() if name.endswith(("._u", "._v"))]
    assert vectors and all(not torch.equal(b, dict(live.named_buffers())[name]) for name, b in vectors)


def test_ema_buffer_default_is_copy_and_unknown_choices_are_refused(cli):
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.engine.planning import plan_training
    from ganforge.registry import default_registry

    loaded = load_blueprint(TINY, ["update_rule.2={type: ema, decay: 0.9}"])
    assert plan_training(loaded, default_registry()).ema_buffers == "copy"
    result = cli("inspect", TINY, "--set", "update_rule.2={type: ema, buffers: mean}")
    assert result.exit_code == 2 and "buffers" in result.stderr


def test_standing_statistics_draw_untruncated_latents_whatever_the_truncation(trained, tmp_path):
    """As BigGAN-PyTorch's accumulate_standing_stats (utils.py:1113, ``z.normal_()``)."""
    from ganforge.commands.sample import sample_grid
    from ganforge.sampling.standing_stats import seeded_standing_statistics

    sampled = sample_grid(trained.options.out, count=8, truncation=0.5, seed=3, standing_stats=2,
                          out=tmp_path / "a.png", device="cpu")
    bp = sampled.run.loaded.blueprint
    settings = dict(passes=2, latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes, sample_seed=3)
    # Copies of the same weights: standing statistics reset the batch norms before the passes.
    untruncated, truncated = (copy.deepcopy(sampled.run.generator) for _ in range(2))
    seeded_standing_statistics(untruncated, **settings)
    seeded_standing_statistics(truncated, truncation=0.5, **settings)
    got = dict(_statistics(sampled.run.generator))
    assert all(torch.equal(got[name], b) for name, b in _statistics(untruncated))
    assert not all(torch.equal(got[name], b) for name, b in _statistics(truncated))
    assert "truncation" not in sampled.statistics


@pytest.mark.parametrize("use", ["samples", "evaluation"])
def test_ema_generator_samples_and_evaluates_with_its_own_converged_sigma(trained, monkeypatch, use):
    from ganforge import evaluation
    from ganforge.components.layers.spectral_norm import spectral_norm_modules

    for sn in spectral_norm_modules(trained.update.ema):  # stale vectors, as between samplings
        sn._u.copy_(torch.nn.functional.normalize(torch.randn_like(sn._u), dim=0))
        sn._v.copy_(torch.nn.functional.normalize(torch.randn_like(sn._v), dim=0))
    seen = []

    def fake_evaluate(network, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(network)
        assert_own_converged_sigma(network, trained.update.generator)
        return evaluation.Evaluation(values={})

    if use == "samples":
        trained.save_samples(trained.fixed_sample_inputs())
        assert_own_converged_sigma(trained.update.ema, trained.update.generator)
    else:
        from ganforge.commands.train import evaluator

        monkeypatch.setattr(evaluation, "evaluate_generator", fake_evaluate)
        monkeypatch.setattr(trained, "evaluator", evaluator(trained.train))  # what ganforge train passes
        trained.evaluate(None)
        assert seen == [trained.update.ema]


def test_restored_ema_generator_gets_its_own_vectors(trained, tmp_path):
    """Also from a checkpoint whose EMA holds the live generator's u/v (as older runs wrote them)."""
    from ganforge.engine.checkpoints import load_newest_valid, save_checkpoint
    from ganforge.engine.restore import restore

    _, state = load_newest_valid(trained.options.out / "checkpoints")
    for key in state["ema"]:
        if key.endswith(("._u", "._v")):
            state["ema"][key] = state["generator"][key].clone()
    restored = restore(save_checkpoint(tmp_path, state["step"], state, keep=1))
    raw = restored.assembly.generator.build("cpu", initialise=False)
    raw.load_state_dict(state["generator"])
    assert restored.uses_ema
    assert_own_converged_sigma(restored.generator, raw)
    # The live generator keeps its stored vectors.


# -- standing statistics -----------------------------------------------------------------------
class TinyGenerator(nn.Module):
    """SN linear → 3×2×2 map → up_resblock (conditional BNs) → image_output (plain BN)."""

    def __init__(self) -> None:
        super().__init__()
        from ganforge.components.blocks.heads import ImageOutput
        from ganforge.components.blocks.resblocks import UpResBlock
        from ganforge.components.layers.spectral_norm import apply_spectral_norm

        self.stem = apply_spectral_norm(nn.Linear(4, 12))
        self.block = UpResBlock(in_channels=3, num_classes=3, channels=2, bn_momentum=0.3)
        self.head = ImageOutput(in_channels=2, bn_momentum=0.3)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.block(self.stem(z).reshape(-1, 3, 2, 2), labels))


def test_standing_statistics_are_the_average_over_the_passes():
    from ganforge.sampling.standing_stats import standing_statistics

    torch.manual_seed(0)
    network = TinyGenerator()
    for _ in range(3):  # running statistics and u/v that a reset must not keep
        network(torch.randn(6, 4), torch.randint(0, 3, (6,)))
    vectors = [b.clone() for sn in network.modules() if isinstance(sn, _SpectralNorm) for b in sn.buffers()]
    batches = [(torch.randn(6, 4) * 2, torch.randint(0, 3, (6,))) for _ in range(3)]

    # By hand: the same passes through a copy in training mode with u/v left alone; record each batch
    # norm's input, then average the batch means and the unbiased batch variances.
    reference = copy.deepcopy(network).train()
    for sn in reference.modules():
        if isinstance(sn, _SpectralNorm):
            sn.eval()
    inputs: dict[str, list[torch.Tensor]] = {}
    for name, bn in reference.named_modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.register_forward_pre_hook(lambda m, args, name=name: inputs.setdefault(name, []).append(args[0]))
    with torch.no_grad():
        for z, labels in batches:
            reference(z, labels)

    assert standing_statistics(network, batches) == 3
    norms = {name: bn for name, bn in network.named_modules() if isinstance(bn, nn.BatchNorm2d)}
    assert len(norms) == 3 and norms.keys() == inputs.keys()
    for name, bn in norms.items():
        xs = [x.double().permute(1, 0, 2, 3).flatten(1) for x in inputs[name]]  # channels × values
        mean = torch.stack([x.mean(1) for x in xs]).mean(0)
        var = torch.stack([((x - x.mean(1, keepdim=True)) ** 2).sum(1) / (x.shape[1] - 1) for x in xs]).mean(0)
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
        assert bn.momentum == 0.3 and int(bn.num_batches_tracked) == 3
    assert not network.training
    after = [b for sn in network.modules() if isinstance(sn, _SpectralNorm) for b in sn.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(vectors, after))


def test_seeded_standing_statistics_are_reproducible_and_zero_passes_change_nothing():
    from ganforge.sampling.standing_stats import seeded_standing_statistics

    torch.manual_seed(0)
    network = TinyGenerator()
    network(torch.randn(6, 4), torch.randint(0, 3, (6,)))
    copies = [copy.deepcopy(network) for _ in range(3)]
    settings = dict(latent_dim=4, num_classes=3, sample_seed=7, batch_size=5)
    described = [seeded_standing_statistics(c, passes=2, **settings) for c in copies[:2]]
    assert described[0] == "standing statistics of 2 training-mode passes of 5 images (latent seed 8, uniform classes)"
    assert all(torch.equal(a, b) for a, b in zip(copies[0].buffers(), copies[1].buffers()))
    assert seeded_standing_statistics(copies[2], passes=0, **settings) == "running statistics"
    assert all(torch.equal(a, b) for a, b in zip(copies[2].buffers(), network.buffers()))


def test_sample_and_evaluate_with_standing_statistics(cli, trained, tmp_path):
    run = trained.options.out
    args = ["--n", "8", "--seed", "3", "--device", "cpu"]
    plain = cli("sample", run, *args, "--out", tmp_path / "plain.png")
    first = cli("sample", run, *args, "--standing-stats", "2", "--out", tmp_path / "a.png")
    assert plain.exit_code == first.exit_code == 0, first.stderr
    assert "batch norm with running statistics" in plain.stdout
    assert "standing statistics of 2 training-mode passes of 64 images (latent seed 4, uniform classes)" in first.stdout
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "plain.png").read_bytes()

    inception = tmp_path / "features.pt"
    save_torchscript(tiny_features_module(), inception)
    result = cli("evaluate", run, "--n", "16", "--metrics", "kid", "--inception", inception, "--device", "cpu",
                 "--batch-size", "8", "--standing-stats", "1")
    assert result.exit_code == 0, result.stderr
    assert "EMA generator in eval mode (batch norm with standing statistics of 1 training-mode passes" in result.stdout
