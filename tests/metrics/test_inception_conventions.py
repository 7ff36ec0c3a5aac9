"""StyleGAN2-ADA's Inception call convention, on stand-ins with the same forward signature.

The real ``inception-2015-12-05.pt`` cannot be downloaded here. The stand-ins do what NVlabs'
metrics rely on (stylegan2-ada-pytorch ``metrics/inception_score.py`` lines 20-36): pixels in
[0, 255] in, ``return_features=True`` gives features, ``no_output_bias=True`` gives the softmax of
the classifier without its bias.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.components.metrics.inception import InceptionFeatures
from ganforge.components.metrics.inception_conventions import NVlabsInception
from ganforge.components.metrics.inception_score import InceptionScore
from support import save_torchscript


def nvlabs_like(img: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, return_features: bool,
                no_output_bias: bool) -> torch.Tensor:
    """Features: per-channel statistics of (pixels − 128) / 128 (12); else the classifier's softmax."""
    x = (img.to(torch.float32) - 128.0) / 128.0
    features = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), x.amin(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
    if return_features:
        return features
    logits = torch.nn.functional.linear(features, weight, None if no_output_bias else bias)
    return torch.softmax(logits, dim=1)


class NVlabsLike(torch.nn.Module):
    """The NVlabs signature, with its classifier ``output`` (12 → 7, a bias that matters: IS must not use it)."""

    def __init__(self) -> None:
        super().__init__()
        self.output = torch.nn.Linear(12, 7)
        torch.nn.init.normal_(self.output.bias, std=3.0)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        return nvlabs_like(img, self.output.weight, self.output.bias, return_features, no_output_bias)


class NVlabsLikeHidden(torch.nn.Module):
    """The same with the classifier under another name: the adapter must run the network twice."""

    def __init__(self) -> None:
        super().__init__()
        self.head = NVlabsLike().output

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        return nvlabs_like(img, self.head.weight, self.head.bias, return_features, no_output_bias)


def nvlabs_inception_score(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """stylegan2-ada-pytorch metrics/inception_score.py lines 30-36, on its softmax outputs."""
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("module, one_pass", [(NVlabsLike, True), (NVlabsLikeHidden, False)])
def test_nvlabs_file_gives_its_features_and_the_bias_free_inception_score(tmp_path, module, one_pass):
    torch.manual_seed(0)
    reference = module()
    path = tmp_path / "inception-2015-12-05.pt"
    save_torchscript(reference, path)
    net = InceptionFeatures(weights=path, device="cpu")
    assert isinstance(net.net, NVlabsInception) and (net.net.weight is not None) == one_pass
    assert net.has_logits and "StyleGAN2-ADA inception-2015-12-05.pt call convention" in net.description

    images = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    features, logits = net.forward_with_logits(images)
    # What the NVlabs file itself gives on the same 299×299 pixels (the protocol's uint8 + resize, undone to [0, 255]).
    pixels = net.preprocess(images) * 128 + 128
    with torch.no_grad():
        their_features = reference(pixels, return_features=True)
        their_probs = reference(pixels, no_output_bias=True)
    torch.testing.assert_close(features, their_features.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.softmax(logits, dim=1), their_probs.double(), rtol=0, atol=1e-6)
    mean, std = nvlabs_inception_score(their_probs.double().numpy(), splits=2)
    out = InceptionScore(splits=2).compute(real=None, fake=features, fake_logits=logits)
    assert out == {"inception_score": pytest.approx(mean, rel=1e-5), "inception_score_std": pytest.approx(std, abs=1e-5)}
    # called as a plain TorchScript, the file would have handed back 7 probabilities as "features"
    assert reference(pixels[:1]).shape == (1, 7)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_other_files_are_called_as_before(tmp_path):
    path = tmp_path / "plain.pt"
    save_torchscript(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()), path)
    net = InceptionFeatures(weights=path, device="cpu")
    assert not isinstance(net.net, NVlabsInception) and not net.has_logits
