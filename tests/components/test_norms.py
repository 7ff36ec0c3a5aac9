"""Batch norm and class-conditional batch norm, against hand-computed normalisation."""

import pytest
import torch

from ganforge.components.layers.norms import BatchNorm, ConditionalBatchNorm2d, make_batch_norm
from support import on_threads


def _normalised(x, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased, as in training-mode BN
    return (x - mean) / torch.sqrt(var + eps)


def test_cbn_initial_tables():
    cbn = ConditionalBatchNorm2d(in_channels=6, num_classes=4)
    assert torch.equal(cbn.class_gain, torch.ones(4, 6))
    assert torch.equal(cbn.class_bias, torch.zeros(4, 6))
    assert cbn.bn.weight is None and cbn.bn.bias is None and cbn.bn.eps == 1e-5


def test_cbn_applies_per_class_gain_and_bias():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(in_channels=3, num_classes=5)
    with torch.no_grad():
        cbn.class_gain.copy_(torch.rand(5, 3) + 0.5)
        cbn.class_bias.copy_(torch.randn(5, 3))
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    labels = torch.tensor([4, 0, 4, 2])
    out = cbn(x, labels)
    norm = _normalised(x)
    for i, label in enumerate(labels.tolist()):
        for c in range(3):
            expected = norm[i, c] * cbn.class_gain[label, c] + cbn.class_bias[label, c]
            torch.testing.assert_close(out[i, c], expected.detach(), rtol=1e-5, atol=1e-5)


def test_cbn_needs_labels():
    cbn = ConditionalBatchNorm2d(in_channels=3, num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        cbn(torch.randn(2, 3, 4, 4))


def test_unconditional_is_plain_affine_bn_and_ignores_labels():
    torch.manual_seed(1)
    bn = ConditionalBatchNorm2d(in_channels=3, num_classes=0)
    with torch.no_grad():
        bn.bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x = torch.randn(4, 3, 4, 4)
    expected = _normalised(x) * bn.bn.weight.detach()[:, None, None] + bn.bn.bias.detach()[:, None, None]
    torch.testing.assert_close(bn(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn(x, torch.tensor([0, 1, 2, 3])), expected, rtol=1e-5, atol=1e-5)
    assert not hasattr(bn, "class_gain")


def test_batch_norm_layer():
    bn = BatchNorm(in_channels=3)
    x = torch.randn(4, 3, 4, 4)
    torch.testing.assert_close(bn(x), _normalised(x), rtol=1e-5, atol=1e-5)
    assert bn.eps == 1e-5 and bn.affine


def test_make_batch_norm():
    assert make_batch_norm(8, num_classes=3).conditional
    assert not make_batch_norm(8, num_classes=3, conditional=False).conditional
    assert not make_batch_norm(8, num_classes=0).conditional


def test_eval_uses_running_statistics():
    cbn = ConditionalBatchNorm2d(in_channels=2, num_classes=2, momentum=1.0)
    x = torch.randn(8, 2, 4, 4) * 3 + 2
    cbn(x, torch.zeros(8, dtype=torch.long))
    cbn.eval()
    y = torch.randn(2, 2, 4, 4)
    mean = x.mean(dim=(0, 2, 3))[:, None, None]
    var = x.var(dim=(0, 2, 3), unbiased=True)[:, None, None]
    torch.testing.assert_close(cbn(y, torch.tensor([1, 1])), (y - mean) / torch.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)


def test_meta_device():
    with torch.device("meta"):
        cbn = ConditionalBatchNorm2d(in_channels=16, num_classes=3)
        out = cbn(torch.empty(2, 16, 8, 8), torch.zeros(2, dtype=torch.long))
        assert out.shape == (2, 16, 8, 8) and out.is_meta
        assert BatchNorm(in_channels=16)(torch.empty(2, 16, 8, 8)).shape == (2, 16, 8, 8)


def test_cbn_table_gradients_are_the_same_on_every_run_with_several_threads():
    """Indexing the class tables gave a backward that added each class's rows in a run-dependent
    order on two CPU threads once rows were wide (here 21-29 of 29 repeats differed); every run
    must give the same gradient."""
    generator = torch.Generator().manual_seed(0)
    cbn = ConditionalBatchNorm2d(in_channels=2048, num_classes=4)
    x = torch.randn(64, 2048, 1, 1, generator=generator)
    labels = torch.randint(0, 4, (64,), generator=generator)
    upstream = torch.randn(64, 2048, 1, 1, generator=generator)

    def gradients():
        cbn.zero_grad(set_to_none=True)
        cbn(x, labels).backward(upstream)
        return cbn.class_gain.grad, cbn.class_bias.grad

    grads = on_threads(2, gradients, times=10)
    assert all(torch.equal(grads[0][0], g) and torch.equal(grads[0][1], b) for g, b in grads[1:])
