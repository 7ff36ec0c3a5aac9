"""Inception Score: uniform predictions give 1, confident evenly spread ones give the class count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from ganforge.errors import GanforgeError
from ganforge.components.metrics.inception_score import InceptionScore


def test_uniform_logits_give_one():
    out = InceptionScore(splits=4).compute(real=None, fake=torch.zeros(40, 2048), fake_logits=torch.zeros(40, 1008))
    assert out["inception_score"] == pytest.approx(1.0, abs=1e-12)
    assert out["inception_score_std"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confident_evenly_spread_logits_give_class_count(classes: int):
    labels = torch.arange(classes * 20) % classes
    logits = torch.full((classes * 20, 1008), -30.0)
    logits[torch.arange(len(labels)), labels] = 30.0
    out = InceptionScore(splits=2).compute(real=None, fake=torch.zeros(len(labels), 4), fake_logits=logits)
    assert out["inception_score"] == pytest.approx(classes, rel=1e-6)


def test_matches_numpy_reference_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((103, 20)) * 3
    splits = 5
    p = scipy.special.softmax(logits, axis=1)
    size = len(p) // splits
    scores = []
    for i in range(splits):
        part = p[i * size:(i + 1) * size]
        py = part.mean(axis=0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    out = InceptionScore(splits=splits).compute(real=None, fake=torch.zeros(103, 4),
                                                fake_logits=torch.from_numpy(logits))
    assert out["inception_score"] == pytest.approx(np.mean(scores), rel=1e-10)
    assert out["inception_score_std"] == pytest.approx(np.std(scores), rel=1e-8)


def test_missing_logits_is_one_line_naming_the_file_that_works_and_how_to_point_at_it():
    from ganforge.components.metrics.inception_score import missing_logits

    message = missing_logits("inception_score", "/data/default_1.pt")
    assert "\n" not in message
    assert message.startswith("inception_score needs Inception logits, but /data/default_1.pt gives pool3 "
                              "features only; pass --inception PATH (or set GANFORGE_INCEPTION=PATH) to "
                              "StyleGAN2-ADA's inception-2015-12-05.pt")
    assert "a tuple (features, logits)" in message and "'logits'" in message
    with pytest.raises(GanforgeError) as err:
        InceptionScore().compute(real=None, fake=torch.zeros(10, 2048), fake_logits=None)
    assert str(err.value) == missing_logits("inception_score", "the Inception network in use")


def test_evaluate_refuses_a_file_without_logits_before_reading_the_run(cli, stand_in, tmp_path):
    from support import assert_clean_failure

    # The stand-in gives features only. The run folder does not exist: the logits check comes first.
    result = cli("evaluate", tmp_path / "no-such-run", "--metrics", "fid,inception_score", "--inception", stand_in,
                 "--device", "cpu")
    line = assert_clean_failure(result, mentions=("inception_score needs Inception logits", str(stand_in),
                                                  "--inception PATH", "GANFORGE_INCEPTION=PATH",
                                                  "inception-2015-12-05.pt"))
    assert "no such run" not in line
