"""Reference features: cached once, reused without reading the data, keyed, with a writable fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.components.metrics.reference import default_cache_dir, load_reference_file, reference_features


class CountingDataset:
    def __init__(self, size: int = 30) -> None:
        self.size = size
        self.reads = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        self.reads += 1
        gen = torch.Generator().manual_seed(index)
        return torch.rand(3, 4, 4, generator=gen) * 2 - 1, index % 3, torch.tensor(0)


class FlattenExtractor:
    has_logits = False
    description = "flatten (test)"
    identity = "flatten-v1"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).double()


def test_second_call_uses_cache_without_reading(tmp_path):
    data = CountingDataset()
    key = {"dataset": "counting", "resolution": 4}
    first = reference_features(data, n=20, extractor=FlattenExtractor(), cache_dir=tmp_path, key=key,
                               batch_size=7, progress=False)
    assert data.reads == 20 and first.shape == (20, 48) and first.dtype == torch.float64
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    data.reads = 0
    second = reference_features(data, n=20, extractor=FlattenExtractor(), cache_dir=tmp_path, key=key,
                                batch_size=7, progress=False)
    assert data.reads == 0
    assert torch.equal(first, second)
    with np.load(files[0]) as stored:
        assert stored["features"].dtype == np.float32 and stored["sigma"].dtype == np.float64
        np.testing.assert_allclose(stored["mu"], first.mean(0).numpy(), rtol=1e-12)
        assert '"dataset":"counting"' in str(stored["key"])


def test_subset_is_seeded_and_whole_set_when_n_exceeds_size(tmp_path):
    data = CountingDataset(size=12)
    everything = reference_features(data, n=100, extractor=FlattenExtractor(), cache_dir=None, key={},
                                    progress=False)
    assert everything.shape[0] == 12
    a = reference_features(data, n=5, extractor=FlattenExtractor(), cache_dir=None, key={}, progress=False)
    b = reference_features(data, n=5, extractor=FlattenExtractor(), cache_dir=None, key={}, progress=False)
    assert torch.equal(a, b)
    rows = {tuple(r.tolist()) for r in everything}
    assert all(tuple(r.tolist()) in rows for r in a)


def test_different_key_or_extractor_gives_different_file(tmp_path):
    data = CountingDataset(size=10)
    run = lambda key, ex=FlattenExtractor(): reference_features(  # noqa: E731
        data, n=10, extractor=ex, cache_dir=tmp_path, key=key, progress=False)
    run({"dataset": "a"})
    run({"dataset": "b"})
    other = FlattenExtractor()
    other.identity = "flatten-v2"
    run({"dataset": "a"}, other)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    data.reads = 0
    run({"dataset": "b"})
    assert data.reads == 0


def test_default_cache_dir_prefers_data_root_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "data"
    root.mkdir()
    assert default_cache_dir(str(root)) == root / ".ganforge_stats"
    assert (root / ".ganforge_stats").is_dir()
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / ".ganforge_stats").write_text("a file where the folder should go")  # cannot be created
    assert default_cache_dir(str(blocked)) == tmp_path / "xdg" / "ganforge" / "stats"
    assert default_cache_dir(None) == tmp_path / "xdg" / "ganforge" / "stats"
    assert (tmp_path / "xdg" / "ganforge" / "stats").is_dir()


def test_load_reference_file_formats(tmp_path):
    feats = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    np.savez(tmp_path / "f.npz", features=feats)
    loaded = load_reference_file(tmp_path / "f.npz")
    assert isinstance(loaded, torch.Tensor) and loaded.dtype == torch.float64 and loaded.shape == (7, 3)
    np.savez(tmp_path / "s.npz", mu=np.zeros(3), sigma=np.eye(3))
    mu, sigma = load_reference_file(tmp_path / "s.npz")
    assert mu.shape == (3,) and sigma.shape == (3, 3)
    np.savez(tmp_path / "bad.npz", other=np.zeros(2))
    with pytest.raises(GanforgeError, match="neither"):
        load_reference_file(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(GanforgeError, match="cannot read"):
        load_reference_file(tmp_path / "junk.npz")


def test_cache_file_is_a_valid_reference_file(tmp_path):
    data = CountingDataset(size=6)
    feats = reference_features(data, n=6, extractor=FlattenExtractor(), cache_dir=tmp_path, key={"k": 1},
                               progress=False)
    (path,) = tmp_path.glob("*.npz")
    assert torch.equal(load_reference_file(path), feats)
