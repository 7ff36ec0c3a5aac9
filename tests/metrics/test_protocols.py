"""The FID protocols checked against independent references: a PNG round trip, TF1's sampling rule
written out in numpy, torch-fidelity's resize and KID, clean-fid's resizer, and FID with scipy."""

from __future__ import annotations

import typing
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from support import save_torchscript, tiny_features_module
from ganforge.components.metrics.features import extract_features
from ganforge.components.metrics.fid import FID
from ganforge.components.metrics.inception import InceptionFeatures
from ganforge.components.metrics.kid import KID
from ganforge.components.metrics.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol, quantise_like_png
from ganforge.errors import GanforgeError


def images(seed: int, count: int = 6, size: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=gen) * 2.2 - 1.1  # a little outside [-1, 1] too


def png_bytes(batch: torch.Tensor, folder) -> np.ndarray:
    """What ``ganforge sample`` writes, read back: torchvision's save_image, then PIL."""
    from ganforge.engine.samples import save_images

    paths = save_images(batch, folder)
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])  # (B, H, W, 3) uint8


def tf1_bilinear_numpy(x: np.ndarray, out: int) -> np.ndarray:
    """TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres): source = dest · in/out.

    Written from the rule in TensorFlow's ``image_resizer_state.h`` / ``resize_bilinear_op.cc``
    (as cited in torch-fidelity's interpolate_compat_tensorflow.py), in float64, one axis at a time.
    """
    def axis(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(out) * (length / out)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, length - 1)
        return lo, hi, src - lo

    ylo, yhi, dy = axis(x.shape[-2])
    xlo, xhi, dx = axis(x.shape[-1])
    top = x[..., ylo, :][..., xlo] * (1 - dx) + x[..., ylo, :][..., xhi] * dx
    bottom = x[..., yhi, :][..., xlo] * (1 - dx) + x[..., yhi, :][..., xhi] * dx
    return top * (1 - dy[:, None]) + bottom * dy[:, None]


def test_quantisation_is_what_a_saved_png_holds(tmp_path):
    batch = images(0)
    expected = png_bytes(batch, tmp_path).transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_array_equal(quantise_like_png(batch).numpy(), expected)
    # real images decoded from bytes come back to the same bytes
    raw = torch.randint(0, 256, (2, 3, 5, 5), generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(quantise_like_png(raw.float() / 127.5 - 1.0).numpy(), raw.float().numpy())


def test_standard_resize_is_tf1_bilinear(tmp_path):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    batch = images(2, count=2, size=7)
    ours = get_protocol("standard")(batch).numpy()
    stored = png_bytes(batch, tmp_path).transpose(0, 3, 1, 2).astype(np.float64)
    reference = (tf1_bilinear_numpy(stored, 299) - 128.0) / 128.0
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6)
    fidelity = interpolate_bilinear_2d_like_tensorflow1x(torch.from_numpy(stored).float(), size=(299, 299),
                                                         align_corners=False)
    np.testing.assert_allclose(ours, ((fidelity - 128.0) / 128.0).numpy(), rtol=0, atol=1e-6)
    # the legacy path samples at half-pixel centres and does not round: measurably different
    legacy = get_protocol("legacy")(batch).numpy()
    assert np.abs(legacy - ours).max() > 0.05


def test_clean_resize_is_clean_fids(tmp_path):
    from cleanfid.resize import make_resizer

    batch = images(3, count=2, size=12)
    stored = png_bytes(batch, tmp_path)  # (B, H, W, 3) uint8, as clean-fid reads files
    resize = make_resizer("PIL", False, "bicubic", (299, 299))  # clean-fid's mode "clean"
    reference = np.stack([resize(image) for image in stored]).transpose(0, 3, 1, 2)
    ours = get_protocol("clean")(batch).numpy()
    np.testing.assert_allclose(ours, (reference - 128.0) / 128.0, rtol=0, atol=1e-6)


def test_default_protocol_and_names():
    from ganforge.blueprint.schema import TrainSpec
    from ganforge.cli import PROTOCOL_NAMES

    assert DEFAULT_PROTOCOL == "standard"
    assert tuple(PROTOCOLS) == PROTOCOL_NAMES
    assert typing.get_args(TrainSpec.model_fields["eval_protocol"].annotation) == PROTOCOL_NAMES
    assert TrainSpec.model_fields["eval_protocol"].default == DEFAULT_PROTOCOL
    with pytest.raises(GanforgeError, match="unknown FID protocol 'tf2'.*standard, clean, legacy"):
        get_protocol("tf2")


@pytest.fixture
def stub_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "stub.pt"
    save_torchscript(tiny_features_module(), path)
    return path


def test_protocol_is_part_of_the_cache_identity(stub_weights):
    identities = {InceptionFeatures(weights=stub_weights, protocol=name).identity for name in PROTOCOLS}
    assert len(identities) == len(PROTOCOLS)
    assert "protocol standard" in InceptionFeatures(weights=stub_weights).description


def reference_features(batch: torch.Tensor, weights, tmp_path) -> np.ndarray:
    """Features by the reference path: PNG bytes → torch-fidelity's resize → TF range → the network."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    stored = torch.from_numpy(png_bytes(batch, tmp_path).transpose(0, 3, 1, 2).copy()).float()
    x = interpolate_bilinear_2d_like_tensorflow1x(stored, size=(299, 299), align_corners=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        net = torch.jit.load(str(weights))
    with torch.no_grad():
        return net((x - 128.0) / 128.0).double().numpy()


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def test_fid_and_kid_of_two_image_sets_match_scipy_and_torch_fidelity(stub_weights, tmp_path):
    from torch_fidelity.metric_kid import kid_features_to_metric

    first = images(4, count=64, size=8)
    second = (images(5, count=64, size=8) * 0.6 + 0.2).clamp(-1, 1)
    extractor = InceptionFeatures(weights=stub_weights, protocol="standard")
    ours_a, _ = extract_features([first[:40], first[40:]], extractor, total=64, progress=False)
    ours_b, _ = extract_features([second], extractor, total=64, progress=False)
    ref_a = reference_features(first, stub_weights, tmp_path / "a")
    ref_b = reference_features(second, stub_weights, tmp_path / "b")
    np.testing.assert_allclose(ours_a.numpy(), ref_a, rtol=1e-5, atol=1e-5)

    fid = FID().compute(real=ours_a, fake=ours_b)["fid"]
    assert fid == pytest.approx(scipy_fid(ref_a, ref_b), rel=1e-4)
    assert fid > 0.1  # the two sets differ: a vacuous zero would pass the comparison above

    kid = KID(subsets=1, subset_size=64).compute(real=ours_a, fake=ours_b)["kid"]
    theirs = kid_features_to_metric(torch.from_numpy(ref_a), torch.from_numpy(ref_b), kid_subsets=1,
                                    kid_subset_size=64, verbose=False, rng_seed=0, kid_kernel="poly",
                                    kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                    kid_kernel_poly_coef0=1)["kernel_inception_distance_mean"]
    assert kid == pytest.approx(theirs, rel=1e-4, abs=1e-9)
    assert abs(kid) > 1e-6
