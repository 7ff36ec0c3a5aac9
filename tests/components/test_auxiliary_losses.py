"""AC-GAN and feature-matching losses, and the heads that feed them: values against hand formulas."""

import math

import pytest
import torch

from ganforge.components.blocks.acgan import ACGANOutput, PooledOutput
from ganforge.components.losses.auxiliary import ACGAN, FeatureMatching
from ganforge.contracts import check_contract, check_instance
from ganforge.records import DiscriminatorOutput, LabelPair
from ganforge.registry import default_registry

REAL = [2.0, 0.5, -1.0]
FAKE = [-2.0, 0.5, 1.0]
REAL_CLASS_LOGITS = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]]
FAKE_CLASS_LOGITS = [[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [2.0, -2.0, 0.5]]
REAL_LABELS = [0, 2, 2]
FAKE_LABELS = [1, 1, 0]


def _mean(values):
    return sum(values) / len(values)


def _cross_entropy(rows, labels):
    """Mean of −log softmax(row)[label], written out."""
    return _mean([math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(rows, labels)])


def _outputs():
    real = DiscriminatorOutput(logit=torch.tensor(REAL), extras={"class_logits": torch.tensor(REAL_CLASS_LOGITS)})
    fake = DiscriminatorOutput(logit=torch.tensor(FAKE), extras={"class_logits": torch.tensor(FAKE_CLASS_LOGITS)})
    return real, fake


LABELS = LabelPair(real=torch.tensor(REAL_LABELS), fake=torch.tensor(FAKE_LABELS))
HINGE_D = _mean([max(0.0, 1 - r) for r in REAL]) + _mean([max(0.0, 1 + f) for f in FAKE])
HINGE_G = -_mean(FAKE)


def test_acgan_discriminator_loss_is_hinge_plus_the_real_images_cross_entropy():
    real, fake = _outputs()
    loss = ACGAN(classifier_weight=0.5)
    expected = HINGE_D + 0.5 * _cross_entropy(REAL_CLASS_LOGITS, REAL_LABELS)
    assert loss.discriminator_loss(real=real, fake=fake, labels=LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_acgan_classify_fakes_adds_the_generated_images_cross_entropy():
    real, fake = _outputs()
    loss = ACGAN(classifier_weight=2.0, classify_fakes=True)
    expected = HINGE_D + 2.0 * (_cross_entropy(REAL_CLASS_LOGITS, REAL_LABELS)
                                + _cross_entropy(FAKE_CLASS_LOGITS, FAKE_LABELS))
    assert loss.discriminator_loss(real=real, fake=fake, labels=LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_acgan_generator_loss_is_hinge_plus_the_generated_images_cross_entropy():
    _, fake = _outputs()
    expected = HINGE_G + 1.0 * _cross_entropy(FAKE_CLASS_LOGITS, FAKE_LABELS)
    assert ACGAN().generator_loss(fake=fake, labels=LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_acgan_with_another_adversarial_loss():
    real, fake = _outputs()
    softplus = lambda x: math.log1p(math.exp(x))
    expected = (_mean([softplus(-r) for r in REAL]) + _mean([softplus(f) for f in FAKE])
                + _cross_entropy(REAL_CLASS_LOGITS, REAL_LABELS))
    loss = ACGAN(adversarial="non_saturating")
    assert loss.discriminator_loss(real=real, fake=fake, labels=LABELS).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("labels", [None, LabelPair(real=None, fake=None)], ids=["none", "pair_of_none"])
def test_acgan_refuses_unconditional_data(labels):
    real, fake = _outputs()
    with pytest.raises(ValueError, match="acgan loss .* needs class labels.*unconditional"):
        ACGAN().discriminator_loss(real=real, fake=fake, labels=labels)
    with pytest.raises(ValueError, match="needs class labels"):
        ACGAN().generator_loss(fake=fake, labels=labels)


def test_acgan_gradients_reach_both_heads_outputs():
    logit = torch.tensor(REAL, requires_grad=True)
    class_logits = torch.tensor(REAL_CLASS_LOGITS, requires_grad=True)
    real = DiscriminatorOutput(logit=logit, extras={"class_logits": class_logits})
    _, fake = _outputs()
    ACGAN().discriminator_loss(real=real, fake=fake, labels=LABELS).backward()
    assert logit.grad is not None and class_logits.grad is not None
    # d CE / d logits = (softmax − one-hot) / B, written out for the first row
    row, label = REAL_CLASS_LOGITS[0], REAL_LABELS[0]
    total = sum(math.exp(v) for v in row)
    expected = [(math.exp(v) / total - (k == label)) / 3 for k, v in enumerate(row)]
    assert class_logits.grad[0].tolist() == pytest.approx(expected, rel=1e-5)


def test_acgan_output_head_shapes_and_values():
    torch.manual_seed(0)
    head = ACGANOutput(in_channels=4, num_classes=5, spectral_norm=False)
    x = torch.randn(2, 4, 3, 3)
    out = head(x)
    assert set(out) == {"logit", "class_logits"} and ACGANOutput.outputs == ("class_logits",)
    assert out["logit"].shape == (2, 1) and out["class_logits"].shape == (2, 5)
    pooled = x.clamp(min=0).sum(dim=(2, 3))
    assert torch.allclose(out["class_logits"], pooled @ head.classifier.weight.T)  # no bias, as StudioGAN
    assert torch.allclose(out["logit"], pooled @ head.linear.weight.T + head.linear.bias)
    record = DiscriminatorOutput.of(out)
    assert record.logit.shape == (2,) and record.class_logits.shape == (2, 5)


def test_acgan_output_needs_classes():
    with pytest.raises(ValueError, match="class-labelled data"):
        ACGANOutput(in_channels=4, num_classes=0)


def test_acgan_output_with_spectral_norm_trains():
    head = ACGANOutput(in_channels=4, num_classes=3)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = DiscriminatorOutput.of(head(x))
    ACGAN().discriminator_loss(real=out, fake=out, labels=LabelPair(torch.tensor([0, 1]), torch.tensor([2, 0]))).backward()
    assert x.grad is not None and all(p.grad is not None for p in head.parameters())


def test_pooled_output_returns_its_features():
    head = PooledOutput(in_channels=4, spectral_norm=False)
    x = torch.randn(2, 4, 3, 3)
    out = head(x)
    assert PooledOutput.outputs == ("features",)
    assert torch.allclose(out["features"], x.clamp(min=0).sum(dim=(2, 3)))
    assert torch.allclose(out["logit"], out["features"] @ head.linear.weight.T + head.linear.bias)


def _features(values, grad=False):
    tensor = torch.tensor(values, requires_grad=grad)
    return tensor, DiscriminatorOutput(logit=tensor.sum(dim=1), extras={"features": tensor})


REAL_FEATURES = [[1.0, 2.0], [3.0, 0.0], [2.0, 1.0]]
FAKE_FEATURES = [[0.0, 1.0], [1.0, 1.0], [-1.0, 4.0]]


def test_feature_matching_generator_loss_is_the_squared_distance_of_the_means():
    real_t, real = _features(REAL_FEATURES, grad=True)
    fake_t, fake = _features(FAKE_FEATURES, grad=True)
    loss = FeatureMatching().generator_loss(fake=fake, real=real, labels=LabelPair(None, None))
    means = [(_mean([r[k] for r in REAL_FEATURES]), _mean([f[k] for f in FAKE_FEATURES])) for k in range(2)]
    assert loss.item() == pytest.approx(sum((r - f) ** 2 for r, f in means), rel=1e-6)
    loss.backward()
    assert real_t.grad is None  # the real features are a fixed target
    # d/d fake_i = −2 (mean_real − mean_fake) / B
    expected = [-2 * (r - f) / 3 for r, f in means]
    assert fake_t.grad[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_feature_matching_mean_absolute_distance():
    _, real = _features(REAL_FEATURES)
    _, fake = _features(FAKE_FEATURES)
    loss = FeatureMatching(distance="mean_absolute").generator_loss(fake=fake, real=real)
    means = [(_mean([r[k] for r in REAL_FEATURES]), _mean([f[k] for f in FAKE_FEATURES])) for k in range(2)]
    assert loss.item() == pytest.approx(_mean([abs(r - f) for r, f in means]), rel=1e-6)


def test_feature_matching_discriminator_loss_is_the_adversarial_one():
    real = DiscriminatorOutput(logit=torch.tensor(REAL), extras={"features": torch.zeros(3, 2)})
    fake = DiscriminatorOutput(logit=torch.tensor(FAKE), extras={"features": torch.zeros(3, 2)})
    softplus = lambda x: math.log1p(math.exp(x))
    expected = _mean([softplus(-r) for r in REAL]) + _mean([softplus(f) for f in FAKE])
    assert FeatureMatching().discriminator_loss(real=real, fake=fake, labels=LABELS).item() == \
        pytest.approx(expected, rel=1e-6)
    assert FeatureMatching(adversarial="hinge").discriminator_loss(real=real, fake=fake, labels=LABELS).item() == \
        pytest.approx(HINGE_D, rel=1e-6)


def test_registered_with_their_capabilities():
    registry = default_registry()
    for kind, name, cls in [("loss", "acgan", ACGAN), ("loss", "feature_matching", FeatureMatching),
                            ("head", "acgan_output", ACGANOutput), ("head", "pooled_output", PooledOutput)]:
        component = registry.get(kind, name)
        assert component.obj is cls
        check_contract(kind, cls)
    check_instance("loss", ACGAN())
    check_instance("loss", FeatureMatching())
    assert ACGAN.needs_outputs == ("class_logits",)
    assert FeatureMatching.needs_outputs == ("features",) and FeatureMatching.generator_needs_real
    with pytest.raises(Exception, match="adversarial"):
        registry.get("loss", "acgan").build({"adversarial": "relativistic"})
