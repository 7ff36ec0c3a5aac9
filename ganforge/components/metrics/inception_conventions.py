"""Inception files whose call convention is not "TF-range 299×299 in, features (and logits) out".

StyleGAN2-ADA's ``inception-2015-12-05.pt`` (NVlabs' TorchScript of the same TF graph, with its
1008-way classifier) takes images in [0, 255] and returns either pool3 features
(``return_features=True``) or softmax probabilities (``no_output_bias=True`` for the Inception
Score, "to match the original implementation"): NVlabs/stylegan2-ada-pytorch (commit d72cc7d)
``metrics/frechet_inception_distance.py`` lines 22-23, ``metrics/inception_score.py`` lines 20-21,
called on uint8 images in ``metrics/metric_utils.py`` lines 244 and 270. Called as a plain
TorchScript it would hand back probabilities as "features". ``adapt_call_convention`` wraps it so
``InceptionFeatures`` gets (features, logits) from TF-range input like any other file.

Not run here on the real file (it cannot be downloaded on this machine); the tests use a stand-in
with the same signature. That the file resizes to 299 itself (identity at 299) and then computes
(x − 128) / 128 is read from a third-party print of its TorchScript code, so unverified.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["NVLABS_ARGUMENTS", "NVlabsInception", "adapt_call_convention"]

NVLABS_ARGUMENTS = ("return_features", "no_output_bias")
"""Keyword arguments of the NVlabs file's ``forward`` that identify its convention."""


def _forward_arguments(net: Any) -> set[str]:
    try:
        return {argument.name for argument in net.forward.schema.arguments}
    except (AttributeError, RuntimeError):  # not TorchScript, or no single schema
        return set()


def adapt_call_convention(net: Any) -> Any:
    """``net`` itself, or ``NVlabsInception(net)`` when its forward takes the NVlabs keyword arguments."""
    if set(NVLABS_ARGUMENTS) <= _forward_arguments(net):
        return NVlabsInception(net)
    return net


class NVlabsInception(torch.nn.Module):
    """The NVlabs Inception behind the (features, logits) convention, from TF-range 299×299 input.

    The logits are the bias-free classifier outputs the NVlabs IS uses, as log-probabilities (any
    logits up to a per-row constant give the same softmax). When the file's ``output`` layer holds
    a (classes, features) weight that reproduces its own ``no_output_bias`` probabilities on a probe
    image, they come from the features in one pass; otherwise the network runs twice per batch.
    """

    convention = "StyleGAN2-ADA inception-2015-12-05.pt call convention (return_features / no_output_bias)"

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net
        self.weight = self._classifier_weight()

    @staticmethod
    def to_pixels(x: torch.Tensor) -> torch.Tensor:
        """TF range (p − 128) / 128, as ``InceptionFeatures.preprocess`` gives, back to p in [0, 255] (exact)."""
        return x * 128.0 + 128.0

    def _probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels, no_output_bias=True)

    def _classifier_weight(self) -> torch.Tensor | None:
        weight = getattr(getattr(self.net, "output", None), "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            return None
        probe = torch.linspace(0.0, 255.0, 3 * 299 * 299, device=weight.device).reshape(1, 3, 299, 299)
        with torch.no_grad():
            features = self.net(probe, return_features=True)
            if features.shape[-1] != weight.shape[1]:
                return None
            mine = torch.softmax(features.float() @ weight.float().T, dim=1)
            theirs = self._probabilities(probe).float()
        return weight if mine.shape == theirs.shape and torch.allclose(mine, theirs, rtol=1e-4, atol=1e-6) else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.to_pixels(x)
        features = self.net(pixels, return_features=True)
        if self.weight is not None:
            return features, features.float() @ self.weight.float().T
        probabilities = self._probabilities(pixels).float()
        return features, torch.log(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny))
