"""``lr_schedule``: the learning rates the optimisers see each step, and exact resume mid-schedule."""

from __future__ import annotations

import pytest

from support import TINY

G_LR, D_LR = 2.0e-4, 4.0e-4  # set here, not taken from tiny.yaml
TTUR = "update_rule.0={type: ttur, g_lr: 2.0e-4, d_lr: 4.0e-4, betas: [0.0, 0.9]}"
# warm-up over 2 steps, linear decay to 0 from step 4 to the run's end (8 steps)
SCHEDULE = "update_rule.2={type: lr_schedule, warmup_steps: 2, decay_start: 4}"
# step: factor, by hand: (step + 1) / 2 in the warm-up, then 1 - (step - 4) / (8 - 4)
FACTORS = {0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.75, 6: 0.5, 7: 0.25}


def test_factor_by_hand():
    from ganforge.components.optim.schedules import lr_factor

    assert [lr_factor(s, total_steps=8, warmup_steps=2, decay_start=4) for s in range(10)] == \
        [0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    # SNGAN: decay from the first step to the end; the default decay start is the warm-up's end
    assert lr_factor(0, total_steps=100) == 1.0 and lr_factor(99, total_steps=100) == pytest.approx(0.01)
    assert lr_factor(10, total_steps=20, warmup_steps=10) == 1.0
    assert lr_factor(15, total_steps=20, warmup_steps=10) == pytest.approx(0.5)
    # a floor and an explicit end independent of the run's length
    assert lr_factor(50, total_steps=1000, decay_start=0, decay_end=100, floor=0.2) == pytest.approx(0.6)
    assert lr_factor(500, total_steps=1000, decay_start=0, decay_end=100, floor=0.2) == pytest.approx(0.2)
    # decay that starts after the run's end never happens
    assert lr_factor(7, total_steps=8, decay_start=50) == 1.0


def _trainer(out, extra=(), *, steps=8, resume=False):
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    trainer = build_trainer(str(TINY), overrides=["train.batch_size=8", "data.size=64", "train.checkpoint_every=4",
                                                  "train.sample_every=1000", "train.log_every=4", TTUR, SCHEDULE, *extra],
                            placement=place_process("cpu"), out=out, data="real")
    trainer.options.steps, trainer.options.resume = steps, resume
    seen: dict[str, list[float]] = {"generator": [], "discriminator": []}
    for role, opt in (("generator", trainer.update.g_opt), ("discriminator", trainer.update.d_opt)):
        opt.register_step_pre_hook(lambda o, args, kwargs, role=role: seen[role].append(o.param_groups[0]["lr"]))
    return trainer, seen


def _expected(steps):
    return ({"generator": [G_LR * FACTORS[s] for s in steps], "discriminator": [D_LR * FACTORS[s] for s in steps]})


def test_rates_the_optimisers_see_and_resume(tmp_path):
    out = tmp_path / "run"
    trainer, seen = _trainer(out)
    assert trainer.run() == 8
    for role in seen:
        assert seen[role] == pytest.approx(_expected(range(8))[role], rel=1e-12)
    # steps 0 (warm-up start), 1 (warm-up end), 6 (mid-decay) and 7 (the last), spelled out
    assert [seen["generator"][s] for s in (0, 1, 6, 7)] == pytest.approx([1e-4, 2e-4, 1e-4, 5e-5])

    # Resume mid-decay from the step-4 checkpoint: the same rates as the uninterrupted run.
    (out / "checkpoints").joinpath("step-000000008.pt").unlink()
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == ["step-000000004.pt"]
    resumed, seen_after = _trainer(out, resume=True)
    assert resumed.run() == 8
    for role in seen:
        assert seen_after[role] == pytest.approx(seen[role][4:], rel=1e-12)


def test_schedule_before_ttur_uses_ttur_rates_and_one_network():
    """The hook reads the base rate from the final plan, so rule order does not matter."""
    import torch

    from ganforge.blueprint.validation import load_blueprint
    from ganforge.registry import default_registry
    from ganforge.engine.planning import plan_training

    loaded = load_blueprint(str(TINY), ["update_rule.0={type: lr_schedule, warmup_steps: 2, networks: discriminator}",
                                        "update_rule.2={type: ttur, g_lr: 2.0e-4, d_lr: 4.0e-4, betas: [0.0, 0.9]}"])
    plan = plan_training(loaded, default_registry())
    assert len(plan.step_hooks) == 1
    optimizers = {role: torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0) for role in ("generator",
                                                                                                  "discriminator")}
    seen = []
    for step in range(3):
        plan.step_hooks[0](step, 3, optimizers)
        seen.append((optimizers["generator"].param_groups[0]["lr"], optimizers["discriminator"].param_groups[0]["lr"]))
    assert [g for g, _ in seen] == [1.0, 1.0, 1.0]  # G's optimiser left alone
    assert [d for _, d in seen] == pytest.approx([D_LR / 2, D_LR, D_LR])


@pytest.mark.parametrize(("setting", "phrase"), [
    ("{type: lr_schedule, warmup_steps: 5, decay_start: 2}", "inside the warm-up"),
    ("{type: lr_schedule, decay_start: 5, decay_end: 5}", "must come after"),
    ("{type: lr_schedule, floor: 1.5}", "less than or equal to 1"),
    ("{type: lr_schedule, networks: g}", "networks"),
])
def test_settings_are_validated_at_the_key(cli, setting, phrase):
    result = cli("inspect", str(TINY), "--set", f"update_rule.2={setting}")
    assert result.exit_code == 2
    assert "update_rule[2]" in result.stderr and phrase in result.stderr


def test_listed_twice_is_an_error(cli):
    result = cli("inspect", str(TINY), "--set", "update_rule.2=lr_schedule", "--set", "update_rule.3=lr_schedule")
    assert result.exit_code == 2 and "list lr_schedule once" in result.stderr
