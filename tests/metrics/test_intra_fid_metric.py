"""Intra-class FID: hand-made classes with known FIDs, scipy per class, and evaluation end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.components.metrics.fid import FID
from ganforge.errors import GanforgeError
from ganforge.registry import default_registry
from support import BLUEPRINTS, TINY, assert_clean_failure


def metric():
    return default_registry().get("metric", "intra_fid").build({})


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula: ‖μa − μb‖² + tr(Σa + Σb − 2 sqrtm(Σa Σb)), written here with scipy."""
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sa @ sb).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * root))


def scipy_intra_fid(real, real_labels, fake, fake_labels) -> float:
    classes = sorted(set(real_labels.tolist()))
    return float(np.mean([scipy_fid(real[real_labels == c], fake[fake_labels == c]) for c in classes]))


def test_hand_made_classes_with_known_fids():
    x0 = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    x1 = np.array([[10.0, 10.0], [11.0, 10.0], [10.0, 12.0]])
    # Class 0: the fakes are the reals moved by (3, 4): equal covariances, FID = 3² + 4² = 25.
    # Class 1: the fakes are the reals scaled by 2 about their mean: same mean, Σf = 4Σ, so
    #   FID = tr Σ + tr 4Σ − 2 tr (4Σ²)^{1/2} = 5 tr Σ − 4 tr Σ = tr Σ. Σ by hand: x 10, 11, 10 (mean 31/3,
    #   squared deviations 1/9 + 4/9 + 1/9 = 2/3, over n − 1 = 2: 1/3); y 10, 10, 12 (mean 32/3, 24/9 / 2
    #   = 4/3): tr Σ = 5/3.
    # intra-class FID = (25 + 5/3) / 2 = 40/3.
    real = np.concatenate([x0, x1])
    fake = np.concatenate([x0 + [3.0, 4.0], (x1 - x1.mean(0)) * 2 + x1.mean(0)])
    real_labels = np.array([0, 0, 0, 0, 1, 1, 1])
    order = np.array([4, 0, 5, 1, 6, 2, 3])  # interleave the generated rows: classes, not positions, pair them
    fake, fake_labels = fake[order], real_labels[order]
    out = metric().compute(real=torch.from_numpy(real), fake=torch.from_numpy(fake),
                           fake_labels=torch.from_numpy(fake_labels), real_labels=torch.from_numpy(real_labels))
    assert out == {"intra_fid": pytest.approx(40 / 3, rel=1e-9)}


def test_a_generator_that_swaps_two_classes_has_fid_zero_but_not_intra_fid():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.standard_normal((30, 3)), rng.standard_normal((30, 3)) + 5.0])
    labels = np.repeat([0, 1], 30)
    swapped = 1 - labels  # the same images, each drawn for the other class
    feats, fake_labels = torch.from_numpy(real), torch.from_numpy(swapped)
    assert FID().compute(real=feats, fake=feats.clone())["fid"] == pytest.approx(0.0, abs=1e-9)
    out = metric().compute(real=feats, fake=feats.clone(), fake_labels=fake_labels,
                           real_labels=torch.from_numpy(labels))
    assert out["intra_fid"] == pytest.approx(scipy_intra_fid(real, labels, real, swapped), rel=1e-6)
    assert out["intra_fid"] > 70  # ‖μ0 − μ1‖² ≈ 3 · 5²


def test_matches_scipy_per_class_on_random_features():
    rng = np.random.default_rng(1)
    real_labels, fake_labels = rng.integers(0, 3, 90), rng.integers(0, 3, 75)
    real = rng.standard_normal((90, 4)) + real_labels[:, None]
    fake = rng.standard_normal((75, 4)) * 1.5 + 0.5 * fake_labels[:, None]
    out = metric().compute(real=torch.from_numpy(real), fake=torch.from_numpy(fake),
                           fake_labels=torch.from_numpy(fake_labels), real_labels=torch.from_numpy(real_labels))
    assert out["intra_fid"] == pytest.approx(scipy_intra_fid(real, real_labels, fake, fake_labels), rel=1e-8)


def test_a_class_with_fewer_than_two_images_is_refused_naming_it():
    real, fake = torch.randn(7, 2), torch.randn(8, 2)
    real_labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])        # class 2: one reference image
    fake_labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    with pytest.raises(GanforgeError, match=r"^intra_fid: class 2 has 1 reference and 4 generated images; each "
                                            r"class needs at least 2 of each: raise --n$"):
        metric().compute(real=real, fake=fake, fake_labels=fake_labels, real_labels=real_labels)
    with pytest.raises(GanforgeError, match="class 3 has 0 reference and 2 generated"):
        metric().compute(real=real[:6], fake=torch.randn(8, 2), real_labels=real_labels[:6],
                         fake_labels=torch.tensor([0, 0, 1, 1, 3, 3, 0, 1]))
    with pytest.raises(GanforgeError, match="needs the class of every reference image"):
        metric().compute(real=real, fake=fake, fake_labels=fake_labels)


# --- end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditional_generator():
    """tiny.yaml's class-conditional generator (procedural data, 4 classes), freshly initialised."""
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint

    loaded = load_blueprint(TINY, ["data.size=64"])
    torch.manual_seed(0)
    return assemble(loaded).generator.build("cpu").eval(), loaded  # eval mode, as evaluation generates


def test_evaluate_generator_pairs_each_reference_image_with_its_class(conditional_generator, stand_in, tmp_path,
                                                                      monkeypatch):
    from ganforge.components.metrics.features import extract_features
    from ganforge.components.metrics.inception import load_inception
    from ganforge.components.metrics.reference import subset_indices
    from ganforge.evaluation import evaluate_generator
    from ganforge.sampling.generation import conditioning_labels, generate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # procedural data has no root: the cache goes here
    generator, loaded = conditional_generator
    bp = loaded.blueprint
    n, batch = 32, 8

    def evaluate():
        return evaluate_generator(generator, loaded=loaded, metrics=["intra_fid", "fid"], n=n,
                                  inception=str(stand_in), batch_size=batch, progress=False).values

    first = evaluate()
    caches = list((tmp_path / "ganforge" / "stats").glob("ref-*.npz"))
    assert len(caches) == 1
    with np.load(caches[0]) as cached:
        real, real_labels = cached["features"].astype(np.float64), cached["labels"]
    # the cached classes are those of the subset's images, in the features' order
    data = default_registry().get("dataset", "procedural").build(bp.data.component_settings())
    assert real_labels.tolist() == [int(data[i][1]) for i in subset_indices(len(data), n, 0)]
    # independently: the same generated images (seed 0), their classes, and scipy's FID per class
    extractor = load_inception(str(stand_in), device="cpu")
    images = generate(generator, n=n, latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                      batch_size=batch, seed=0)
    fake = extract_features(images, extractor, total=n, progress=False)[0].numpy()
    fake_labels = conditioning_labels(n=n, latent_dim=bp.generator.latent_dim, num_classes=bp.data.num_classes,
                                      batch_size=batch, seed=0).numpy()
    assert first["intra_fid"] == pytest.approx(scipy_intra_fid(real, real_labels, fake, fake_labels), rel=1e-6)
    assert first["fid"] == pytest.approx(scipy_fid(real, fake), rel=1e-6)
    # a cache hit gives the same; a cache file from before labels were stored is written again, with them
    assert evaluate() == first
    with np.load(caches[0]) as cached:
        np.savez(caches[0], **{k: cached[k] for k in cached.files if k != "labels"})
    assert evaluate() == first
    with np.load(caches[0]) as cached:
        assert cached["labels"].tolist() == real_labels.tolist()


def test_evaluate_refuses_a_reference_without_classes_before_reading_the_run(cli, stand_in, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    result = cli("evaluate", tmp_path / "no-such-run", "--metrics", "fid,intra_fid", "--reference", folder,
                 "--inception", stand_in, "--device", "cpu")
    assert_clean_failure(result, mentions=("metric intra_fid needs the class of every reference image",
                                           f"--reference {folder} has none", "leave out --reference"))
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(2), sigma=np.eye(2))
    result = cli("evaluate", tmp_path / "no-such-run", "--metrics", "intra_fid", "--reference", stats,
                 "--inception", stand_in, "--device", "cpu")
    assert_clean_failure(result, mentions=(f"--reference {stats} has none",))


def test_an_unconditional_run_is_refused_before_generating(stand_in):
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.evaluation import evaluate_generator

    loaded = load_blueprint(BLUEPRINTS / "long_range32.yaml")
    assert loaded.blueprint.data.num_classes == 0

    class NeverCalled(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("generated an image")

    with pytest.raises(GanforgeError, match=r"^metric intra_fid compares generated and reference images class by "
                                            r"class, but this run is unconditional \(data.num_classes 0\); use fid$"):
        evaluate_generator(NeverCalled(), loaded=loaded, metrics=["fid", "intra_fid"], n=8, inception=str(stand_in),
                           progress=False)


def test_registered_with_its_contract():
    built = metric()
    assert built.name == "intra_fid" and built.needs_real and built.needs_labels and built.needs_real_labels
    assert json.dumps(built.compute(real=torch.randn(6, 2), fake=torch.randn(6, 2),
                                    real_labels=torch.tensor([0, 0, 0, 1, 1, 1]),
                                    fake_labels=torch.tensor([1, 1, 1, 0, 0, 0])))


def test_an_unconditional_blueprint_naming_it_for_training_is_refused_at_its_key():
    from ganforge.blueprint.validation import load_blueprint, resolve_components
    from ganforge.errors import BlueprintError

    loaded = load_blueprint(BLUEPRINTS / "long_range32.yaml", ["train.eval_metrics=[fid, intra_fid]"])
    with pytest.raises(BlueprintError, match="metric intra_fid compares .* data.num_classes is 0") as err:
        resolve_components(loaded, default_registry())
    assert err.value.path == "train.eval_metrics[1]"
    conditional = load_blueprint(TINY, ["train.eval_metrics=[intra_fid]"])
    assert [m.component.name for m in resolve_components(conditional, default_registry()).metrics] == ["intra_fid"]
