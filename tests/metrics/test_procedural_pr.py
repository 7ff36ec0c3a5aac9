"""The procedural detector against hand-drawn gratings, and procedural_pr's limiting cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.blueprint.schema import DataSpec
from ganforge.components.data.procedural import ANGLE_JITTER, ProceduralDetector, class_grating, grid
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry

K, R = 4, 16


def clean_grating(label: int, phase: float) -> torch.Tensor:
    """A class's grating drawn here from the documented formula, no blob, at the middle of the jitter range."""
    axis = torch.linspace(-1.0, 1.0, R)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    k = label / K
    angle = math.pi * k + ANGLE_JITTER * 0.375  # one of the detector's four orientations
    freq = 1.5 + 3.0 * ((label * 7) % K) / K
    palette = torch.tensor([math.cos(2 * math.pi * (k + c / 3)) for c in range(3)])
    wave = torch.sin(math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
    return (0.6 * wave[None] * palette[:, None, None])[None]


@settings(max_examples=20, deadline=None)
@given(label=st.integers(0, K - 1), phase=st.floats(0.0, 2 * math.pi))
def test_detector_reads_class_and_phase_of_a_clean_grating(label, phase):
    features = ProceduralDetector(resolution=R, channels=3, num_classes=K)(clean_grating(label, phase))[0]
    energy = features[:K]
    assert int(energy.argmax()) == label
    assert float(energy[label]) == pytest.approx(1.0, abs=0.2)  # about 1; 1.5 cycles per half-width is not quite orthogonal
    # Σ sin(a + φ)·e^{ia} ≈ (N/2)(sin φ + i cos φ): the phasor is (sin φ, cos φ), derived by hand.
    # Approximate: at 1.5 cycles per half-width the grid holds too few periods for exact orthogonality.
    read = math.atan2(float(features[K]), float(features[K + 1]))
    assert abs(math.remainder(read - phase, 2 * math.pi)) < 0.15


def test_detector_finds_the_blob_centre():
    yy, xx = grid(R)
    blob = torch.exp(-((xx - 0.4) ** 2 + (yy + 0.3) ** 2) / 0.08) * 0.8 - 0.2
    image = blob[None].expand(3, R, R)[None]
    centre = ProceduralDetector(resolution=R, channels=3, num_classes=K)(image)[0, K + 2:]
    assert centre.tolist() == pytest.approx([0.4, -0.3], abs=0.05)


def test_detector_classifies_every_real_image():
    data = default_registry().get("dataset", "procedural").build({"resolution": R, "num_classes": K, "size": 200})
    images = torch.stack([data[i][0] for i in range(200)])
    labels = torch.tensor([int(data[i][1]) for i in range(200)])
    energy = data.detector()(images)[:, :K]
    assert torch.equal(energy.argmax(1), labels)


def data_spec(**kw) -> DataSpec:
    return DataSpec(type="procedural", resolution=R, num_classes=K, size=kw.pop("size", 1200), **kw)


def metric(**settings_):
    return default_registry().get("metric", "procedural_pr").build(settings_)


def test_real_against_real_is_high_and_copies_have_no_recall():
    bound = metric(reference=600).bind(data=data_spec())
    assert bound.needs_inception_features is False and bound.real.shape == (600, K + 4)
    data = default_registry().get("dataset", "procedural").build({"resolution": R, "num_classes": K, "size": 1200})
    held_out = bound.detector(torch.stack([data[i][0] for i in range(600, 1200)]))
    real = bound.compute(real=None, fake=held_out)
    assert real["procedural_precision"] > 0.9 and real["procedural_recall"] > 0.9
    # mode collapse: one image per class, drawn 150 times each with a little noise
    copies = torch.cat([held_out[c:c + 1].expand(150, -1) for c in range(K)])
    copies = copies + 1e-3 * torch.randn(copies.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    collapsed = bound.compute(real=None, fake=copies)
    assert collapsed["procedural_recall"] < 0.1


def test_refuses_other_data_and_tiny_references():
    with pytest.raises(GanforgeError, match="procedural_pr scores the built-in procedural data.*'long_range'"):
        metric().bind(data=DataSpec(type="long_range", resolution=32))
    with pytest.raises(GanforgeError, match="too few reference images"):
        metric(k=5).bind(data=data_spec(size=4))


def test_evaluate_cli_scores_a_tiny_run_without_inception(cli, tmp_path, no_inception):
    from support import TINY

    out = tmp_path / "run"
    trained = cli("train", TINY, "--out", out, "--steps", "1", "--device", "cpu", "--set", "train.batch_size=4",
                  "--set", "data.size=64", "--set", "train.sample_every=1000")
    assert trained.exit_code == 0, trained.stderr
    result = cli("evaluate", out, "--metrics", "procedural_pr", "--n", "40", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "procedural_precision: " in result.stdout and "procedural_recall: " in result.stdout
    assert "procedural_phase_diversity: " in result.stdout
    assert "procedural_class_accuracy: " in result.stdout and "procedural_worst_class_accuracy: " in result.stdout
    assert "analytic procedural detector" in result.stdout


def test_phase_diversity_by_hand_and_on_real_data():
    from ganforge.components.metrics.procedural_pr import phase_diversity

    # two classes: class 0 at phases 0 and π/2 → resultant |(1 + i)/2| = √2/2; class 1 twice at one phase → 0 spread
    rows = [[1, 0, 0, 0, 0.0, 1.0, 0, 0], [1, 0, 0, 0, 1.0, 0.0, 0, 0],
            [0, 1, 0, 0, 0.6, 0.8, 0, 0], [0, 1, 0, 0, 0.6, 0.8, 0, 0], [0, 0, 1, 0, 0.0, 1.0, 0, 0]]
    features = torch.tensor(rows, dtype=torch.float64)
    assert phase_diversity(features) == pytest.approx(((1 - math.sqrt(2) / 2) + 0.0) / 2)  # class 2 alone: left out
    data = default_registry().get("dataset", "procedural").build({"resolution": R, "num_classes": K, "size": 400})
    real = data.detector()(torch.stack([data[i][0] for i in range(400)]))
    assert phase_diversity(real) > 0.85
    copies = torch.cat([real[c:c + 1].expand(100, -1) for c in range(K)])
    assert phase_diversity(copies) < 1e-6


def test_class_accuracy_by_hand_and_on_real_data():
    from ganforge.components.metrics.procedural_pr import class_accuracy

    # detected classes 0, 0, 1, 3, 3 (strongest energy) for conditioning labels 0, 0, 1, 1, 3
    rows = [[1, 0, 0, 0], [.9, .1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, .2, .8]]
    features = torch.cat([torch.tensor(rows, dtype=torch.float64), torch.zeros(5, 4, dtype=torch.float64)], 1)
    overall, worst = class_accuracy(features, torch.tensor([0, 0, 1, 1, 3]))
    assert (overall, worst) == (pytest.approx(4 / 5), pytest.approx(1 / 2))  # class 1: one of two right
    data = default_registry().get("dataset", "procedural").build({"resolution": R, "num_classes": K, "size": 200})
    real = data.detector()(torch.stack([data[i][0] for i in range(200)]))
    labels = torch.tensor([int(data[i][1]) for i in range(200)])
    assert class_accuracy(real, labels) == (1.0, 1.0)
    assert class_accuracy(real, (labels + 1) % K) == (0.0, 0.0)


class GratingDrawer(torch.nn.Module):
    """A stand-in generator that draws a clean grating of class (label + shift) mod K, at a phase set by z."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([clean_grating((int(c) + self.shift) % K, float(z[i, 0]) % (2 * math.pi))
                          for i, c in enumerate(labels)])


@pytest.mark.parametrize("shift, expected", [(0, 1.0), (1, 0.0)])
def test_evaluation_passes_each_image_its_conditioning_class(shift, expected):
    """A generator drawing the asked class scores 1, one drawing the next class 0: labels line up with images."""
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.evaluation import evaluate_generator
    from support import TINY

    loaded = load_blueprint(TINY, ["data.size=64"])
    result = evaluate_generator(GratingDrawer(shift), loaded=loaded, metrics=["procedural_pr"], n=96, batch_size=40,
                                progress=False)
    assert result.values["procedural_class_accuracy"] == expected
    assert result.values["procedural_worst_class_accuracy"] == expected
