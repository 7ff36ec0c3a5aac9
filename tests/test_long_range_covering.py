"""long_range32_covering.yaml is long_range32.yaml plus exactly the changes its header names.

The README's attention study on it is only a fair test of attention if nothing else moved: the same
networks, data, loss and batch, with minibatch stddev in D and learning rates 1e-3 the only changes.
"""

from __future__ import annotations

from ganforge.blueprint.validation import load_blueprint
from support import BLUEPRINTS

BASE = BLUEPRINTS / "long_range32.yaml"
COVERING = BLUEPRINTS / "long_range32_covering.yaml"


def loaded(path):
    return load_blueprint(path).blueprint


def test_only_the_stated_settings_differ_from_long_range32():
    base, covering = loaded(BASE), loaded(COVERING)
    for section in ("generator", "data", "loss", "optimizers", "regularizers"):
        assert getattr(covering, section) == getattr(base, section), section
    for key in ("batch_size", "steps", "precision"):
        assert getattr(covering.train, key) == getattr(base.train, key), key
    assert covering.discriminator.attention == base.discriminator.attention
    assert covering.discriminator.head == base.discriminator.head
    kept = [b for b in covering.discriminator.blocks if b.type != "minibatch_stddev"]
    assert kept == base.discriminator.blocks
    rates = covering.update_rule[0].model_dump()
    assert (rates["type"], rates["g_lr"], rates["d_lr"]) == ("ttur", 1.0e-3, 1.0e-3)
    assert base.update_rule[0].model_dump()["g_lr"] == 2.0e-4
    assert covering.update_rule[1:] == base.update_rule[1:]


def test_minibatch_stddev_follows_ds_16_and_8_pixel_blocks():
    from ganforge.assembly import assemble

    layers = assemble(load_blueprint(COVERING)).discriminator.layers
    sizes = [layer.input_shape[1] for layer in layers if layer.component == "minibatch_stddev"]
    assert sizes == [16, 8]
    assert sum(layer.attention for layer in layers) == 1  # attention still at 16×16 unless a study removes it


def test_the_no_attention_baseline_is_what_the_readme_study_ran():
    bp = load_blueprint(COVERING, ["generator.attention=[]", "discriminator.attention=[]"]).blueprint
    assert bp.generator.attention == [] and bp.discriminator.attention == []
    assert bp.train.eval_metrics == ["consistency", "combination_coverage"]
