"""BigGAN's generator pieces: shared embedding, hierarchical z and the conditional up-block.

Checked against hand-written references: the embedding lookup, torch.split of z by hand, batch
norm with gain 1 + W_g·y and bias W_b·y written out, the whole block written with functional
convs and repeat_interleave up-sampling, and parameter counts counted by hand (and equal to those
of BigGAN-PyTorch's 128² generator blocks).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganforge.components.blocks.biggan import (
    BigGANUpBlock,
    HierarchicalZ,
    SharedEmbedding,
)
from ganforge.components.layers.spectral_norm import spectral_norm_modules
from ganforge.contracts import check_contract
from ganforge.registry import default_registry

# --- shared_embedding -------------------------------------------------------------------------

def test_shared_embedding_is_a_lookup_of_its_table():
    torch.manual_seed(0)
    shared = SharedEmbedding(num_classes=5, dim=3)
    labels = torch.tensor([4, 0, 0, 2])
    out = shared(labels=labels)
    assert set(out) == {"class_embedding"}
    expected = torch.stack([shared.embedding.weight[i] for i in labels.tolist()])
    assert torch.equal(out["class_embedding"], expected)
    assert out["class_embedding"].shape == (4, 3)


def test_shared_embedding_declares_its_entry_and_its_tag():
    assert SharedEmbedding.provides == {"class_embedding": "shared"}
    assert SharedEmbedding.parameter_tags == frozenset({"no_orthogonal"})
    assert SharedEmbedding(num_classes=2).embedding.weight.shape == (2, 128)  # dim 128 by default
    assert not any(parametrize.is_parametrized(m) for m in SharedEmbedding(num_classes=2).modules())  # no SN


def test_shared_embedding_refuses_an_unconditional_model_and_missing_labels():
    with pytest.raises(ValueError, match="num_classes > 0"):
        SharedEmbedding(num_classes=0)
    with pytest.raises(ValueError, match="needs class labels"):
        SharedEmbedding(num_classes=3)(labels=None)


# --- hierarchical_z ---------------------------------------------------------------------------

def test_hierarchical_z_splits_like_biggan():
    torch.manual_seed(0)
    z = torch.randn(3, 120)  # BigGAN 128²: dim_z 120, 5 blocks, 6 slots of 20
    out = HierarchicalZ(latent_dim=120, consumers={"z_chunk": 5})(z=z)
    assert set(out) == {"input", "z_chunk"}
    assert torch.equal(out["input"], z[:, 0:20])
    assert out["z_chunk"].shape == (3, 5, 20)
    for i in range(5):
        assert torch.equal(out["z_chunk"][:, i], z[:, 20 * (i + 1):20 * (i + 2)])


def test_hierarchical_z_refuses_an_uneven_split():
    with pytest.raises(ValueError, match=r"6 equal chunks.*latent_dim 128 is not divisible by 6.*126 or 132"):
        HierarchicalZ(latent_dim=128, consumers={"z_chunk": 5})


def test_hierarchical_z_without_consumers_feeds_all_of_z_to_the_stem():
    z = torch.randn(2, 8)
    out = HierarchicalZ(latent_dim=8, consumers={})(z=z)
    assert torch.equal(out["input"], z) and out["z_chunk"].shape == (2, 0, 8)


def test_hierarchical_z_declares_its_entries_and_checks_z():
    assert HierarchicalZ.provides == {"z_chunk": "per_layer", "input": "shared"}
    assert not list(HierarchicalZ(latent_dim=6, consumers={"z_chunk": 2}).parameters())
    with pytest.raises(ValueError, match=r"z of shape \(B, 6\)"):
        HierarchicalZ(latent_dim=6, consumers={"z_chunk": 2})(z=torch.randn(2, 7))


# --- biggan_up --------------------------------------------------------------------------------

def block(cin=4, cout=3, z_dim=2, emb_dim=3, **settings) -> BigGANUpBlock:
    return BigGANUpBlock(in_channels=cin, channels=cout, z_chunk_dim=z_dim, class_embedding_dim=emb_dim, **settings)


def hand_cbn(x, y, w_gain, w_bias, eps):
    """Batch norm over (B, H, W) with biased variance, times 1 + W_g·y, plus W_b·y (ccbn)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    normed = (x - mean) / torch.sqrt(var + eps)
    gain = 1 + (y @ w_gain.T)
    bias = y @ w_bias.T
    return normed * gain[:, :, None, None] + bias[:, :, None, None]


def nearest2x(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def test_output_shape_and_channels_default():
    x = torch.randn(2, 4, 5, 5)
    y = dict(z_chunk=torch.randn(2, 2), class_embedding=torch.randn(2, 3))
    assert block()(x, **y).shape == (2, 3, 10, 10)
    assert block(cout=0)(x, **y).shape == (2, 4, 10, 10)  # channels 0: same as in


def test_conditional_batch_norm_is_the_hand_formula():
    torch.manual_seed(0)
    b = block(spectral_norm=False, eps=1e-4).double()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    emb, zc = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    y = torch.cat([emb, zc], dim=1)  # BigGAN's order: class embedding, then z chunk
    out = b.bn1(x, y)
    torch.testing.assert_close(out, hand_cbn(x, y, b.bn1.gain.weight, b.bn1.bias.weight, 1e-4), rtol=1e-10, atol=1e-10)
    assert isinstance(b.bn1.bn, nn.BatchNorm2d) and not b.bn1.bn.affine  # batch statistics, no own gain


def test_whole_block_is_the_hand_written_gblock():
    torch.manual_seed(1)
    b = block(spectral_norm=False).double()
    x = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    emb, zc = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    y = torch.cat([emb, zc], dim=1)
    h = F.relu(hand_cbn(x, y, b.bn1.gain.weight, b.bn1.bias.weight, 1e-5))
    h = F.conv2d(nearest2x(h), b.conv1.weight, b.conv1.bias, padding=1)
    h = F.relu(hand_cbn(h, y, b.bn2.gain.weight, b.bn2.bias.weight, 1e-5))
    h = F.conv2d(h, b.conv2.weight, b.conv2.bias, padding=1)
    expected = h + F.conv2d(nearest2x(x), b.shortcut.weight, b.shortcut.bias)
    torch.testing.assert_close(b(x, z_chunk=zc, class_embedding=emb), expected, rtol=1e-10, atol=1e-10)


def hand_count(cin, cout, cond):
    convs = (9 * cin * cout + cout) + (9 * cout * cout + cout) + (cin * cout + cout)  # 3×3, 3×3, 1×1 shortcut
    norms = 2 * cond * cin + 2 * cond * cout  # bias-free gain and bias linears of both batch norms
    return convs + norms


@pytest.mark.parametrize("cin,cout", [(4, 3), (5, 5)])
def test_parameter_count_is_the_hand_count(cin, cout):
    b = block(cin=cin, cout=cout, z_dim=2, emb_dim=3)
    assert sum(p.numel() for p in b.parameters()) == hand_count(cin, cout, 5)
    assert b.shortcut.weight.shape == (cout, cin, 1, 1)  # always a 1×1 conv, also when channels do not change


def test_parameter_counts_match_biggan_pytorch_128():
    # BigGAN-PyTorch Generator(G_ch=96, dim_z=120, shared_dim=128, hier=True, G_shared=True,
    # resolution=128), built and counted per block: sum(p.numel() for p in G.blocks[i][0].parameters()).
    reference = {(1536, 1536): 45_740_544, (1536, 768): 17_789_184, (768, 384): 4_618_368,
                 (384, 192): 1_240_128, (192, 96): 352_800}
    with torch.device("meta"):
        for (cin, cout), count in reference.items():
            b = BigGANUpBlock(in_channels=cin, channels=cout, z_chunk_dim=20, class_embedding_dim=128)
            assert sum(p.numel() for p in b.parameters()) == count == hand_count(cin, cout, 148)


def test_spectral_norm_on_every_conv_and_norm_linear():
    assert len(list(spectral_norm_modules(block()))) == 7  # conv1, conv2, shortcut, 2 × (gain, bias)
    assert not list(spectral_norm_modules(block(spectral_norm=False)))


def test_gradients_reach_the_context_and_the_embedding():
    torch.manual_seed(2)
    shared = SharedEmbedding(num_classes=4, dim=3)
    zc = torch.randn(2, 2, requires_grad=True)
    emb = shared(labels=torch.tensor([1, 3]))["class_embedding"]
    out = block()(torch.randn(2, 4, 2, 2), z_chunk=zc, class_embedding=emb)
    out.square().mean().backward()
    assert zc.grad is not None and zc.grad.abs().sum() > 0
    grad = shared.embedding.weight.grad
    assert grad[[1, 3]].abs().sum() > 0 and torch.all(grad[[0, 2]] == 0)  # only the looked-up rows


def test_refuses_missing_or_mis_sized_context():
    x = torch.randn(2, 4, 2, 2)
    with pytest.raises(ValueError, match="conditions on z_chunk .* received none"):
        block()(x, class_embedding=torch.randn(2, 3))
    with pytest.raises(ValueError, match="conditions on class_embedding .* received none"):
        block()(x, z_chunk=torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"expects z_chunk of 2 values per image"):
        block()(x, z_chunk=torch.randn(2, 5), class_embedding=torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"expects class_embedding of 0 values"):
        block(emb_dim=0)(x, z_chunk=torch.randn(2, 2), class_embedding=torch.randn(2, 3))


def test_one_entry_alone_conditions_the_block():
    b = block(z_dim=0, emb_dim=3)
    assert b(torch.randn(2, 4, 2, 2), class_embedding=torch.randn(2, 3)).shape == (2, 3, 4, 4)
    assert b.bn1.gain.in_features == 3


def test_unconditioned_block_is_plain_batch_norm_with_learned_affine():
    b = block(z_dim=0, emb_dim=0)
    assert b.bn1.bn.affine and not hasattr(b.bn1, "gain")
    assert b(torch.randn(2, 4, 2, 2)).shape == (2, 3, 4, 4)
    assert sum(p.numel() for p in b.parameters()) == hand_count(4, 3, 0) + 2 * 4 + 2 * 3


def test_registered_and_following_their_contracts():
    registry = default_registry()
    for kind, name, cls in (("context", "shared_embedding", SharedEmbedding),
                            ("context", "hierarchical_z", HierarchicalZ),
                            ("block", "biggan_up", BigGANUpBlock)):
        assert registry.get(kind, name).obj is cls
        check_contract(kind, cls)
