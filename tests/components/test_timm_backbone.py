"""timm trunk: offline builds, local checkpoints only, lazy timm import."""

import subprocess
import sys

import pytest
import torch

from ganforge.components.layers.init_schemes import orthogonal
from ganforge.components.layers.timm_backbone import TimmBackbone


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch weights fails the test."""
    import timm.models._builder as builder

    def forbidden(*args, **kwargs):
        raise AssertionError("timm_backbone tried to download weights")

    for name in ("load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file", "load_custom_from_hf"):
        if hasattr(builder, name):
            monkeypatch.setattr(builder, name, forbidden)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_importing_the_module_does_not_import_timm():
    code = (
        "import sys\n"
        "import ganforge.components.layers.timm_backbone, ganforge.components.layers.init_schemes, ganforge.components.blocks.resblocks\n"
        "assert 'timm' not in sys.modules, 'timm imported at module import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_default_builds_and_outputs_feature_map():
    trunk = TimmBackbone(in_channels=3, in_size=32)
    assert trunk.model_name == "resnet18" and trunk.channels == 512 and trunk.reduction == 32
    out = trunk(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512, 1, 1)


@pytest.mark.parametrize(("model", "shape"), [("test_resnet", (2, 96, 1, 1)), ("test_vit", (2, 64, 2, 2)), ("test_mambaout", (2, 64, 1, 1))])
def test_other_architectures_channels_first(model, shape):
    trunk = TimmBackbone(in_channels=1, in_size=32, model=model)
    out = trunk(torch.randn(2, 1, 32, 32))
    assert out.shape == shape and out.shape[1] == trunk.channels


def test_local_checkpoint_is_loaded_and_kept(tmp_path):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    trunk = TimmBackbone(in_channels=3, in_size=32, model="test_resnet", checkpoint=str(path))
    loaded = dict(trunk.body.named_parameters())
    reference = dict(source.named_parameters())
    name = next(n for n in loaded if n.endswith("conv1.weight") or n.endswith("conv1.0.weight"))
    assert torch.equal(loaded[name], reference[name])
    orthogonal()(trunk)  # loaded weights are never re-initialised
    assert torch.equal(dict(trunk.body.named_parameters())[name], reference[name])


def test_random_weights_follow_init_scheme():
    trunk = TimmBackbone(in_channels=3, in_size=32, model="test_resnet")
    assert not trunk.ganforge_keep_init
    conv = next(m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d))
    before = conv.weight.detach().clone()
    orthogonal()(trunk)
    assert not torch.equal(before, conv.weight)


def test_bad_settings_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        TimmBackbone(in_channels=3, in_size=32, checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="no model"):
        TimmBackbone(in_channels=3, in_size=32, model="no_such_net")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="could not load"):
        TimmBackbone(in_channels=3, in_size=32, model="test_resnet", checkpoint=str(bad))


def test_meta_device(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not read on meta")
    with torch.device("meta"):
        trunk = TimmBackbone(in_channels=3, in_size=32, checkpoint=str(path))
        out = trunk(torch.empty(2, 3, 32, 32))
    assert out.is_meta and out.shape == (2, 512, 1, 1)
