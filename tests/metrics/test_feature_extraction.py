"""extract_features: exact counts, truncation, logits, progress on stderr."""

from __future__ import annotations

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.components.metrics.features import extract_features


class MeanExtractor:
    has_logits = False

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        return images.float().flatten(1).mean(dim=1, keepdim=True).repeat(1, 4)


class WithLogits(MeanExtractor):
    has_logits = True

    def forward_with_logits(self, images):
        return self(images), torch.ones(images.shape[0], 3)


def batches(count: int, size: int):
    for i in range(count):
        yield torch.full((size, 3, 4, 4), float(i))


def test_stops_at_total_and_cuts_last_batch(capsys):
    extractor = MeanExtractor()
    feats, logits = extract_features(batches(10, 4), extractor, total=10, progress=True, label="generated")
    assert feats.shape == (10, 4) and feats.dtype == torch.float64 and logits is None
    assert extractor.seen == 10
    assert feats[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    err = capsys.readouterr().err
    assert "\rgenerated: 10/10 images" in err and "images/s" in err


def test_tuples_and_logits():
    data = [(torch.zeros(3, 1, 2, 2), torch.zeros(3)), (torch.ones(3, 1, 2, 2), torch.zeros(3))]
    feats, logits = extract_features(iter(data), WithLogits(), total=5, progress=False)
    assert feats.shape == (5, 4) and logits.shape == (5, 3) and logits.dtype == torch.float64


def test_too_few_images_is_an_error(capsys):
    with pytest.raises(GanforgeError, match="only 8 images"):
        extract_features(batches(2, 4), MeanExtractor(), total=9, progress=False)
    assert capsys.readouterr().err == ""
