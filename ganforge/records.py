"""The small typed records components and the engine hand each other.

They are the vocabulary of the contracts in ``ganforge.contracts``: what a discriminator returns
(``DiscriminatorOutput``), which classes a batch was scored with (``LabelPair``), a generator pass
with its conditioning context (``GeneratorPass``) and a parameter with its tags
(``TaggedParameter``). Nothing here imports torch: the records only hold tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

if TYPE_CHECKING:
    import torch

__all__ = ["DiscriminatorOutput", "GeneratorPass", "LabelPair", "TaggedParameter"]


@dataclass(frozen=True)
class DiscriminatorOutput:
    """What D says about a batch: ``logit`` (B,) always, plus the extras its head declares.

    Extras are read by name, ``out.class_logits`` or ``out.extras["class_logits"]``; a head
    declares their names with its ``outputs`` capability (e.g. ``("class_logits",)``), so a loss
    that needs one is refused at assembly, not deep inside ``train``.
    """

    logit: "torch.Tensor"
    extras: Mapping[str, "torch.Tensor"] = field(default_factory=dict)

    def __getattr__(self, name: str) -> "torch.Tensor":
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        shown = ", ".join(sorted(extras)) or "none"
        raise AttributeError(f"the discriminator's output has no {name!r} (its head declares: {shown}; "
                             "a head declares extras with its `outputs` capability)")

    def get(self, name: str, default: Any = None) -> Any:
        return self.extras.get(name, default)

    @classmethod
    def of(cls, raw: Any) -> "DiscriminatorOutput":
        """A network's raw output as a record: a (B, 1) or (B,) tensor, a mapping with ``logit``, or a record."""
        if isinstance(raw, DiscriminatorOutput):
            return raw
        if isinstance(raw, Mapping):
            if "logit" not in raw:
                raise ValueError(f"a discriminator head returned a mapping without 'logit' (keys: {', '.join(raw)})")
            extras = {k: v for k, v in raw.items() if k != "logit"}
            return cls(logit=raw["logit"].reshape(-1), extras=extras)
        return cls(logit=raw.reshape(-1))

    def split(self, sizes: list[int]) -> list["DiscriminatorOutput"]:
        """Per-image outputs cut into consecutive batches (the joint real-and-generated pass)."""
        logits = self.logit.split(sizes)
        extras = {name: value.split(sizes) for name, value in self.extras.items()}
        return [DiscriminatorOutput(logit=logit, extras={name: parts[i] for name, parts in extras.items()})
                for i, logit in enumerate(logits)]

    def float(self) -> "DiscriminatorOutput":
        """Every tensor in float32 (losses are computed in full precision under autocast)."""
        return DiscriminatorOutput(logit=self.logit.float(),
                                   extras={k: v.float() if v.is_floating_point() else v for k, v in self.extras.items()})

    def detach(self) -> "DiscriminatorOutput":
        return DiscriminatorOutput(logit=self.logit.detach(), extras={k: v.detach() for k, v in self.extras.items()})


class LabelPair(NamedTuple):
    """The classes real images carry and generated images were conditioned on (None: unconditional)."""

    real: "torch.Tensor | None"
    fake: "torch.Tensor | None"


@dataclass(frozen=True)
class GeneratorPass:
    """Images from one generator pass, with the conditioning context it built (``w``, styles, ...).

    The context tensors are those the generator used, so gradients flow to them (path-length
    regularisation differentiates the images with respect to the styles).
    """

    images: "torch.Tensor"
    context: Mapping[str, "torch.Tensor"]
    labels: "torch.Tensor | None" = None


class TaggedParameter(NamedTuple):
    """A parameter with its dotted name in its network and the tags its components gave it."""

    name: str
    parameter: "torch.nn.Parameter"
    tags: frozenset[str]
