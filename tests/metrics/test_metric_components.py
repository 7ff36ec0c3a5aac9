"""Every registered metric builds from defaults, states what it needs, and returns finite floats."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.registry import default_registry


METRICS = {c.name: c for c in default_registry().list("metric")}


def test_builtin_metrics_are_registered():
    assert {"fid", "kid", "pr", "inception_score"} <= set(METRICS)
    for component in METRICS.values():
        assert component.summary


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_component_computes(name: str):
    metric = METRICS[name].build({})
    assert metric.name == name and isinstance(metric.needs_real, bool) and isinstance(metric.needs_logits, bool)
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    fake = torch.randn(40, 6, generator=gen, dtype=torch.float64) + 0.2
    logits = torch.randn(40, 1008, generator=gen, dtype=torch.float64)
    classes = torch.arange(40) % 4
    per_class = ({"real_labels": classes, "fake_labels": classes.flip(0)}
                 if getattr(metric, "needs_real_labels", False) else {})  # intra_fid: classes on both sides
    out = metric.compute(real=real, fake=fake, fake_logits=logits if metric.needs_logits else None, **per_class)
    assert out and all(isinstance(v, float) and math.isfinite(v) for v in out.values())


@pytest.mark.parametrize("name", ["kid", "pr", "density_coverage", "intra_fid"])
def test_metrics_needing_features_reject_stats_only(name: str):
    metric = METRICS[name].build({})
    with pytest.raises(GanforgeError, match="reference features"):
        metric.compute(real=None, fake=torch.zeros(10, 4), real_stats=(torch.zeros(4), torch.eye(4)))


def test_settings_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        METRICS["kid"].build({"subset_size": 1})
    with pytest.raises(ValidationError):
        METRICS["pr"].build({"nearest": 3})
