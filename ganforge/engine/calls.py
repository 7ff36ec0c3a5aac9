"""How the engine calls the components it trains with: only with what each one asks for.

A loss, regulariser or feedback method names what it needs as keyword parameters; ``call_with``
passes exactly those. Losses written for the earlier logits-only contract keep working through
``LegacyLoss``, which warns once.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..contracts import capability, is_legacy_loss
from ..records import DiscriminatorOutput
from ..registry import warn_deprecated

if TYPE_CHECKING:
    from ..blueprint.validation import Resolved


def wanted(function: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """The keywords ``function`` takes, and whether it takes any (``**kwargs``); read per call (microseconds)."""
    params = inspect.signature(function).parameters.values()
    return (frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY),
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params))


def call_with(function: Callable[..., Any], available: Mapping[str, Any]) -> Any:
    """``function(**what it asks for)``; a value given as a zero-argument ``lazy`` is computed only when asked."""
    names, takes_any = wanted(function)
    chosen = available if takes_any else {k: v for k, v in available.items() if k in names}
    return function(**{k: v() if isinstance(v, Lazy) else v for k, v in chosen.items()})


class Lazy:
    """A value worth computing only for the components that ask for it (the tagged parameter list)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Any:
        return self.make()


class LegacyLoss:
    """A loss of the earlier contract (``real_logits``/``fake_logits``) seen through the current one."""

    def __init__(self, loss: Any) -> None:
        self.inner = loss
        self.generator_needs_real = capability(loss, "generator_needs_real", kind="loss")

    def discriminator_loss(self, *, real: DiscriminatorOutput, fake: DiscriminatorOutput, **_: Any) -> torch.Tensor:
        return self.inner.discriminator_loss(real_logits=real.logit, fake_logits=fake.logit)

    def generator_loss(self, *, fake: DiscriminatorOutput, real: DiscriminatorOutput | None = None,
                       **_: Any) -> torch.Tensor:
        extra = {"real_logits": real.logit} if self.generator_needs_real and real is not None else {}
        return self.inner.generator_loss(fake_logits=fake.logit, **extra)

    def __getattr__(self, name: str) -> Any:  # state_dict, feedback, settings: the wrapped loss's own
        return getattr(self.inner, name)


class CalledLoss:
    """The blueprint's loss, called with what each of its methods takes."""

    def __init__(self, loss: Any) -> None:
        self.inner = loss
        self.generator_needs_real = capability(loss, "generator_needs_real", kind="loss")

    def discriminator_loss(self, **available: Any) -> torch.Tensor:
        return call_with(self.inner.discriminator_loss, available)

    def generator_loss(self, **available: Any) -> torch.Tensor:
        if not self.generator_needs_real:
            available.pop("real", None)
        return call_with(self.inner.generator_loss, available)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def adapt_loss(resolved: "Resolved") -> CalledLoss:
    """Build the blueprint's loss; one of the earlier contract is adapted, with a one-time warning."""
    loss = resolved.build()
    component = resolved.component
    if is_legacy_loss(loss):
        if "legacy contract" not in component._warned:
            component._warned.add("legacy contract")
            warn_deprecated(f"loss {component.name!r} ({component.qualname}) uses the earlier contract "
                            "discriminator_loss(*, real_logits, fake_logits); write "
                            "discriminator_loss(*, real, fake[, labels]) and generator_loss(*, fake[, real][, labels]) "
                            "over ganforge.records.DiscriminatorOutput (see the README, Writing a plugin)")
        loss = LegacyLoss(loss)
    return CalledLoss(loss)


class ScheduledRegularizer:
    """A regulariser with its network and its ``every``: due at steps 0, N, 2N..., its value times N there."""

    def __init__(self, regularizer: Any, *, every: int, path: str) -> None:
        self.regularizer, self.every, self.path = regularizer, every, path
        self.network = capability(regularizer, "network", kind="regularizer")

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def __call__(self, available: Mapping[str, Any]) -> torch.Tensor:
        value = call_with(self.regularizer, available)
        return value if self.every == 1 else value * self.every


def attach_controllers(controllers: Mapping[str, Any], resolved: Iterable["Resolved"],
                       networks: Iterable[nn.Module]) -> None:
    """Give each controller the network modules that require it (``requires = ("controller:NAME",)``)."""
    modules = [m for network in networks for m in network.modules()]
    for spec in resolved:
        key = f"controller:{spec.component.name}"
        mine = [m for m in modules if key in capability(m, "requires", kind="layer")]
        controllers[spec.path].attach(modules=mine)


def component_of(component: Any) -> Any:
    """The blueprint's component itself, under the engine's call wrappers (for messages)."""
    while isinstance(component, (CalledLoss, LegacyLoss)):
        component = component.inner
    return component
