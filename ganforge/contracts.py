"""What a component of each kind must look like, checked when a plugin's component loads.

The engine calls components in fixed ways (``loss.generator_loss(fake_logits=...)``,
``rule.apply(plan)``, ``reg(discriminator=..., real=..., fake=...)``, factories with keyword
settings). A plugin that breaks one of these rules would otherwise pass ``inspect`` and crash
deep inside ``train``; here it is refused up front with the rule it breaks, and reported like
any other broken plugin.

``check_contract(kind, obj)`` raises ``ContractError`` with a one-line reason.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, Callable

from .errors import RegistryError

CONTEXT_PARAMS = frozenset({"in_channels", "in_features", "in_size", "num_classes"})
NETWORK_KINDS = frozenset({"layer", "block", "head"})


class ContractError(RegistryError):
    """A component that does not follow its kind's documented rules."""


def _label(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _settings_signature(obj: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError) as err:
        raise ContractError(f"{_label(obj)} has no inspectable signature ({err})") from None


def check_settings(kind: str, obj: Callable[..., Any]) -> None:
    """Rules shared by every kind: keyword-only, type-annotated settings (the annotations are the schema)."""
    if not callable(obj):
        raise ContractError(f"{_label(obj)} is not a class or factory function ({type(obj).__name__})")
    sig = _settings_signature(obj)
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    for param in sig.parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ContractError(
                f"setting {param.name!r} of {_label(obj)} must be keyword-only (write `def __init__(self, *, ...)`)"
            )
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as err:  # unresolvable annotations would silently become "any value"
        raise ContractError(f"type annotations of {_label(obj)} cannot be resolved ({type(err).__name__}: {err})") \
            from None
    for param in sig.parameters.values():
        if param.name not in hints:
            raise ContractError(
                f"setting {param.name!r} of {_label(obj)} has no type annotation (annotations are the settings schema)"
            )
    if kind in NETWORK_KINDS:
        for param in sig.parameters.values():
            if param.name not in CONTEXT_PARAMS and param.default is inspect.Parameter.empty:
                raise ContractError(f"network component setting {param.name!r} of {_label(obj)} needs a default")


def _method(cls: type, name: str, kind: str) -> inspect.Signature:
    method = getattr(cls, name, None)
    if method is None or not callable(method):
        raise ContractError(f"{kind} class {_label(cls)} has no method {name}()")
    try:
        sig = inspect.signature(method)
    except (TypeError, ValueError) as err:
        raise ContractError(f"{_label(cls)}.{name} has no inspectable signature ({err})") from None
    params = list(sig.parameters.values())
    if isinstance(inspect.getattr_static(cls, name, None), (staticmethod, classmethod)):
        return sig
    if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        params = params[1:]  # self
    return sig.replace(parameters=params)


def _keyword_only(cls: type, name: str, kind: str, required: tuple[str, ...]) -> None:
    """``cls.name`` must take exactly keyword arguments, including ``required``; no other required ones."""
    sig = _method(cls, name, kind)
    params = sig.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for p in params.values():
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                      inspect.Parameter.VAR_POSITIONAL):
            raise ContractError(
                f"{kind} method {name}() of {_label(cls)} must take keyword-only arguments, but {p.name!r} is "
                f"positional (write `def {name}(self, *, {', '.join(required)})`)"
            )
    for arg in required:
        if arg not in params and not takes_kwargs:
            raise ContractError(f"{kind} method {name}() of {_label(cls)} must accept the keyword argument {arg!r}")
    for p in params.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty and p.name not in required:
            raise ContractError(
                f"{kind} method {name}() of {_label(cls)} requires {p.name!r}, which the engine never passes"
            )


def _check_loss(obj: Any) -> None:
    if not inspect.isclass(obj):
        raise ContractError(f"a loss must be a class with discriminator_loss() and generator_loss(), got {_label(obj)}")
    _keyword_only(obj, "discriminator_loss", "loss", ("real_logits", "fake_logits"))
    needs_real = bool(getattr(obj, "generator_needs_real", False))
    _keyword_only(obj, "generator_loss", "loss", ("fake_logits", "real_logits") if needs_real else ("fake_logits",))


def _check_regularizer(obj: Any) -> None:
    if inspect.isclass(obj):  # a factory function's result can only be checked when called
        if "__call__" not in {name for klass in obj.__mro__ if klass is not object for name in vars(klass)}:
            raise ContractError(f"regularizer class {_label(obj)} has no __call__(self, *, discriminator, real, fake)")
        _keyword_only(obj, "__call__", "regularizer", ("discriminator", "real", "fake"))


def _check_update_rule(obj: Any) -> None:
    if inspect.isclass(obj):
        sig = _method(obj, "apply", "update_rule")
        positional = [p for p in sig.parameters.values()
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        takes_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
        required = [p for p in sig.parameters.values()
                    if p.default is inspect.Parameter.empty
                    and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if not (positional or takes_varargs) or len(required) > 1 or (required and required[0] not in positional):
            raise ContractError(
                f"update_rule method apply() of {_label(obj)} must take the plan as its one argument "
                "(write `def apply(self, plan)`)"
            )


def _check_network(kind: str, obj: Any) -> None:
    if inspect.isclass(obj):
        torch = sys.modules.get("torch")
        if torch is not None and not issubclass(obj, torch.nn.Module):
            raise ContractError(f"{kind} class {_label(obj)} must subclass torch.nn.Module (or be a factory function)")


def check_contract(kind: str, obj: Any) -> None:
    """Raise ``ContractError`` naming the first rule ``obj`` breaks as a component of ``kind``."""
    check_settings(kind, obj)
    if kind == "loss":
        _check_loss(obj)
    elif kind == "regularizer":
        _check_regularizer(obj)
    elif kind == "update_rule":
        _check_update_rule(obj)
    elif kind in NETWORK_KINDS:
        _check_network(kind, obj)
