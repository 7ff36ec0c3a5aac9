"""Any timm architecture as an image → feature-map trunk (e.g. a discriminator body).

timm is imported only when the layer is built, so importing ganforge stays cheap.
"""

from __future__ import annotations

from types import MappingProxyType
from pathlib import Path

import torch
from torch import nn

from ganforge.registry import register

__all__ = ["TimmBackbone"]

# Every remote weight source timm knows of is blanked, so only the local file can be read.
_OFFLINE_ONLY = MappingProxyType(dict(url=None, hf_hub_id=None, hf_hub_filename=None, source=None, custom_load=False))


@register("layer", "timm_backbone")
class TimmBackbone(nn.Module):
    """A timm model's last feature map as a trunk: any architecture, offline, optional local weights.

    Built with ``timm.create_model(model, features_only=True, out_indices=(-1,),
    in_chans=in_channels)``; the output is the deepest feature map (B, C', H/r, W/r), always
    channels-first. Nothing is ever downloaded: weights are random unless ``checkpoint``
    names a local file (a state dict of the full timm model, read with
    ``torch.load(weights_only=True)``; timm adapts the classifier and input-channel count).
    Loaded weights are kept: weight-init schemes skip this layer when ``checkpoint`` is set.
    Fixed-input-size architectures (ViT, Swin...) are built for ``in_size``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_size: int,
        model: str = "resnet18",
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        import timm
        from timm.models import get_pretrained_cfg

        if not timm.is_model(model):
            raise ValueError(f"timm has no model {model!r} (see timm.list_models())")
        if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
            raise ValueError(f"timm_backbone checkpoint {checkpoint!r} is not a file (weights are never downloaded)")

        kwargs: dict = dict(in_chans=in_channels)
        cfg = get_pretrained_cfg(model)
        if cfg is not None and cfg.fixed_input_size:
            kwargs["img_size"] = in_size
        # On the meta device (shape inference) there is nothing to load the weights into.
        load = checkpoint is not None and torch.get_default_device().type != "meta"
        if load:
            state = _read_checkpoint(timm, model, str(Path(checkpoint).expanduser()), kwargs)
            kwargs["pretrained_cfg_overlay"] = dict(_OFFLINE_ONLY, file=None, state_dict=state)
        try:
            self.body = timm.create_model(model, pretrained=load, features_only=True, out_indices=(-1,), **kwargs)
        except (RuntimeError, TypeError, AssertionError, KeyError) as err:
            what = f"load {checkpoint!r} into" if load else "build"
            raise ValueError(f"timm_backbone could not {what} {model!r} with features_only: {err}") from err

        self.model_name = model
        self.channels: int = self.body.feature_info.channels()[-1]
        self.reduction: int = self.body.feature_info.reduction()[-1]
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self._channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"
        # Read by ganforge.components.layers.init_schemes: never overwrite loaded weights.
        self.ganforge_keep_init = checkpoint is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)[-1]
        if self._channels_last:
            features = features.permute(0, 3, 1, 2)
        return features


def _read_checkpoint(timm, model: str, path: str, kwargs: dict) -> dict:
    """The checkpoint's state dict (``torch.load(weights_only=True)``), checked to cover the trunk.

    timm loads pretrained weights non-strictly for feature extractors, so a checkpoint of
    another architecture would silently leave most layers random; compare its keys with
    those of the headless model (built on the meta device, so it costs no memory) instead.
    """
    from timm.models import load_state_dict

    try:
        state = load_state_dict(path, weights_only=True)
    except Exception as err:  # unpickling errors vary by torch version
        raise ValueError(f"timm_backbone could not read checkpoint {path!r}: {err}") from err
    with torch.device("meta"):
        reference = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    missing = sorted(set(reference.state_dict()) - set(state))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"timm_backbone could not load {path!r} into {model!r}: the checkpoint lacks {len(missing)} "
            f"of its tensors ({shown}); is it a state dict of this architecture?"
        )
    return state
