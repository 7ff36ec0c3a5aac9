"""Every kind of component, declared once in ``KIND_TABLE``, and the checks that hold components to it.

The engine calls components in fixed ways (``loss.generator_loss(fake=..., labels=...)``,
``rule.apply(plan)``, a regulariser with the needs it names, factories with keyword settings). A plugin that breaks one of these rules would otherwise pass ``inspect`` and crash
deep inside ``train``; here it is refused up front with the rule it breaks, and reported like
any other broken plugin.

``KIND_TABLE`` maps each kind's name to its ``Kind``: the declared interface (a ``typing.Protocol``),
its *capabilities* (optional attributes a component may set to tell the engine something, each with
its default and meaning), the context parameters the assembler fills in, where a blueprint names
one, and its kind-specific checks. The registry (which kinds exist, which are network kinds, what
context a component gets), the plugin loader (which entry-point names are valid),
``ganforge components`` and the conformance test all read it; ``kinds_markdown()`` renders it.

``check_contract(kind, obj)`` raises ``ContractError`` with a one-line reason.
``check_instance(kind, obj)`` checks a built component against its interface and the types of the
capabilities it sets (the conformance test runs it on every registered component). The engine reads
capabilities only through ``capability(obj, name)``, which refuses a name that no kind declares, so a
flag can neither be misspelt by the reader nor exist without a documented meaning.
"""

from __future__ import annotations

import inspect
import sys
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from .errors import RegistryError

if TYPE_CHECKING:
    import torch


class ContractError(RegistryError):
    """A component that does not follow its kind's documented rules."""


# ---------------------------------------------------------------------------------------------
# Interfaces: what the engine calls on a built component of each kind
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class NetworkModule(Protocol):
    """layer, block, head: a ``torch.nn.Module``; ``forward(x)`` or ``forward(x, labels)`` maps a batch.

    Class labels go to a module whose ``forward`` has a ``labels`` parameter. The output shape is
    inferred on the meta device, so it must depend on the input's shape only.
    """

    def forward(self, x: "torch.Tensor", *args: Any) -> "torch.Tensor": ...


@runtime_checkable
class Loss(Protocol):
    """loss: what D and G minimise, given D's outputs and the labels (keyword-only, so real and fake never swap).

    ``real`` and ``fake`` are ``records.DiscriminatorOutput`` (``logit`` (B,) plus the head's extras);
    ``labels`` is a ``records.LabelPair``. A loss written for the earlier contract
    (``real_logits``/``fake_logits``) still works through an adapter, with a one-time warning.
    """

    def discriminator_loss(self, *, real: Any, fake: Any, labels: Any) -> "torch.Tensor": ...

    def generator_loss(self, *, fake: Any, labels: Any) -> "torch.Tensor": ...


@runtime_checkable
class Regularizer(Protocol):
    """regularizer: a weighted penalty added to its network's loss, differentiable (``create_graph=True``).

    Its ``__call__`` is keyword-only and names what it needs (``REGULARIZER_NEEDS``); ``network``
    says whose loss it joins; the blueprint's ``every: N`` makes it lazy (run at steps 0, N, 2N...
    with its value multiplied by N, StyleGAN2's scaling).
    """

    def __call__(self, **needs: Any) -> "torch.Tensor": ...


@runtime_checkable
class Latent(Protocol):
    """latent: draws the generator's random inputs from the engine's seeded generator."""

    def draw(self, n: int, *, generator: Any, device: Any) -> dict[str, "torch.Tensor"]: ...


@runtime_checkable
class ContextProducer(Protocol):
    """context: a module run at the start of every generator pass; returns conditioning entries by name."""

    provides: Mapping[str, str]

    def forward(self, **inputs: Any) -> dict[str, "torch.Tensor"]: ...


@runtime_checkable
class Controller(Protocol):
    """controller: stateful feedback from training to the modules that require it (ADA's p)."""

    def attach(self, *, modules: Any) -> None: ...

    def feedback(self, **observed: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class UpdateRule(Protocol):
    """update_rule: edits the training plan (optimizers, D steps per G step, EMA) in place."""

    def apply(self, plan: Any) -> None: ...


@runtime_checkable
class OptimizerFactory(Protocol):
    """optimizer: the factory's result, called with the parameters, returns a ``torch.optim.Optimizer``."""

    def __call__(self, params: Any) -> Any: ...


@runtime_checkable
class InitScheme(Protocol):
    """init: the factory's result, called with the assembled network, (re-)initialises it in place."""

    def __call__(self, network: Any) -> None: ...


@runtime_checkable
class Dataset(Protocol):
    """dataset: a map-style dataset of ``(image, label)`` items (``(image, label, skipped)``: see ``max_skipped``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@runtime_checkable
class Metric(Protocol):
    """metric: scores generated images (features from Inception, or from its own detector after ``bind``)."""

    name: str

    def compute(self, *, real: Any, fake: Any, fake_logits: Any = None, real_stats: Any = None) -> dict[str, float]: ...


# ---------------------------------------------------------------------------------------------
# Capabilities: optional attributes with a declared default and meaning
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    """One optional attribute a component may set: its name, default, type, and what it means."""

    name: str
    default: Any
    doc: str
    types: tuple[type, ...] = (bool,)  # the accepted types of a value that is set (``method``: callable)
    method: bool = False  # a method (read as the bound method, or None when absent)


def _caps(*caps: Capability) -> dict[str, Capability]:
    return {cap.name: cap for cap in caps}


_REQUIRES = Capability(
    "requires", (), "component names (\"kind:name\", e.g. \"controller:ada\") this component needs beside it in "
    "the blueprint; assembly refuses a blueprint that lacks one, naming it. A module requiring a controller is "
    "attached to it.", types=(tuple,))
_FEEDBACK = Capability(
    "feedback", None, "method (*, step, losses, real) -> None, taking any of these keywords: called after every "
    "training step with the step just finished, the detached losses by network and D's detached output on the "
    "last D update's real images (records.DiscriminatorOutput).", method=True)
_STATE = (
    Capability("state_dict", None, "method () -> dict: the component's training state (not a module's: its "
               "buffers are in the network's state dict), saved in checkpoints and restored on --resume.",
               method=True),
    Capability("load_state_dict", None, "method (state) -> None: puts state_dict()'s value back.", method=True),
)
_PARAMETER_TAGS = Capability(
    "parameter_tags", None, "tags for every parameter inside the module (e.g. \"mapping\", \"no_orthogonal\"); "
    "optimizers.<network>.groups sets per-tag settings, regularisers read them.",
    types=(frozenset, tuple, type(None)))


_NETWORK_CAPABILITIES = _caps(
    Capability("batch_dependent", False,
               "an image's output can depend on the other images of its batch (other than through batch norm, "
               "which the engine recognises itself); the engine then never runs real and generated images "
               "through D in one joint pass. Read on every module of a network, at any depth."),
    Capability("logged_scalars", None,
               "method () -> dict[str, Tensor] of scalars the training log records under the module's path "
               "(e.g. attention γ).", method=True),
    Capability("attention_map", None,
               "method (x) -> (B, N, N_keys) softmax attention weights, queries and keys flattened row-major, "
               "without advancing spectral-norm power iteration. A module offering it IS an attention layer: "
               "the one rule used by `inspect`, the plan's attention list and `ganforge attention`.",
               method=True),
    Capability("pooled", None,
               "for an attention module: True when keys are 2×2-pooled (key grid H/2×W/2), False when not; "
               "None: undeclared, inferred from the number of keys.", types=(bool, type(None))),
    Capability("ganforge_keep_init", False,
               "init schemes leave this module's weights (and everything inside it) alone, e.g. a pretrained "
               "trunk."),
    Capability("outputs", (), "for a discriminator head: the names of the extras its forward returns beside "
               "'logit' (a dict {'logit': ..., name: ...}); losses read them from records.DiscriminatorOutput.",
               types=(tuple,)),
    Capability("batch_statistics", None,
               "the module normalises with its batch's statistics in training mode and keeps running statistics "
               "(offering reset_running_stats() and momentum): standing statistics recompute them, the "
               "batch-dependence check counts it, SyncBN converts it. None: decided by class (torch's batch norms).",
               types=(bool, type(None))),
    Capability("carries", (), "streams the component carries on beside x (StyleGAN2's skip image): it takes each "
               "as a keyword (None for the first carrier) and returns {'x': ..., name: ...}; the stack's last "
               "component may return its output tensor instead. Read from the class before building.",
               types=(tuple,)),
    _PARAMETER_TAGS, _REQUIRES, _FEEDBACK,
)


_LOSS_CAPABILITIES = _caps(
    Capability("generator_needs_real", False,
               "generator_loss() also takes real (D's output on a real batch), e.g. relativistic or "
               "feature-matching losses; the engine then runs D on a real batch during the generator step."),
    Capability("needs_outputs", (), "the extras of D's output the loss reads (e.g. ('class_logits',)); assembly "
               "refuses a discriminator head that does not declare them.", types=(tuple,)),
    _REQUIRES, _FEEDBACK, *_STATE,
)

_REGULARIZER_CAPABILITIES = _caps(
    Capability("network", "discriminator", "whose loss the penalty joins: 'discriminator' or 'generator'.",
               types=(str,)),
    Capability("needs_context", (), "the generator's context entries the penalty differentiates through (path "
               "length: ('style',)); assembly refuses a generator whose producers provide none of that name.",
               types=(tuple,)),
    _REQUIRES, _FEEDBACK, *_STATE,
)

_CONTEXT_CAPABILITIES = _caps(
    Capability("provides", None, "entry name -> 'shared' (one (B, dim) tensor for every consumer) or "
               "'per_layer' ((B, n, dim): the i-th consumer gets [:, i]); 'input' replaces the stack's input.",
               types=(dict,)),
    _PARAMETER_TAGS, _REQUIRES,
)

_DATASET_CAPABILITIES = _caps(
    Capability("max_skipped", None,
               "the dataset replaces unreadable files itself and its items are (image, label, skipped), "
               "skipped counting the files it passed over for this item; a run stops once more than "
               "max_skipped were skipped. None: items are (image, label) and nothing is skipped.",
               types=(int, type(None))),
)

_METRIC_CAPABILITIES = _caps(
    Capability("needs_real", False, "compute() needs the reference (real_stats or real features)."),
    Capability("needs_inception_features", True,
               "compute() takes Inception pool3 features (and logits). False: the metric scores images "
               "with its own detector, obtained by bind(data=..., registry=...)."),
    Capability("needs_logits", False,
               "compute() reads fake_logits (Inception logits of the generated images); a metric that "
               "does not declare it is given fake_logits=None."),
    Capability("needs_labels", False,
               "compute() reads fake_labels: the class each generated image was conditioned on (None "
               "for an unconditional run); a metric that does not declare it is not given them."),
    Capability("needs_real_labels", False,
               "with needs_real: compute() reads real_labels, the class of each reference image; "
               "evaluation refuses, before generating, an unconditional run or a reference without classes "
               "(--reference folder or file)."),
    Capability("needs_full_features", True,
               "with needs_real: the per-image reference features are needed, not only their mean and "
               "covariance (False for FID, which works from statistics alone)."),
    Capability("bind", None,
               "method (*, data[, registry]) -> metric bound to the run's data settings, with a `detector` "
               "(required when needs_inception_features is False).", method=True),
)


def _label(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def check_keyword_only(obj: Any) -> inspect.Signature:
    """The one keyword-only rule, for ``@register``, ``Registry.add`` and a plugin's contract check.

    A component is a class or factory function whose settings are all keyword-only, so they can
    never be passed in the wrong order. Returns its signature.
    """
    if not callable(obj):
        raise ContractError(f"{_label(obj)} is not a class or factory function ({type(obj).__name__})")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError) as err:
        raise ContractError(f"{_label(obj)} has no inspectable signature ({err})") from None
    for param in sig.parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ContractError(
                f"setting {param.name!r} of {_label(obj)} must be keyword-only (write `def __init__(self, *, ...)`)"
            )
    return sig


def check_settings(kind: str, obj: Callable[..., Any]) -> None:
    """Rules shared by every kind: keyword-only, type-annotated settings (the annotations are the schema)."""
    sig = check_keyword_only(obj)
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
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
    spec = KIND_TABLE.get(kind)
    if spec is not None and spec.network:
        for param in sig.parameters.values():
            if param.name not in spec.context_params and param.default is inspect.Parameter.empty:
                raise ContractError(f"network component setting {param.name!r} of {_label(obj)} needs a default")


def _accepts(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` can be called with the keyword ``name``."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True  # not inspectable (a builtin): let the call itself decide
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


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


def _keyword_only(cls: type, name: str, kind: str, required: tuple[str, ...],
                  optional: tuple[str, ...] = ()) -> None:
    """``cls.name`` must take exactly keyword arguments, including ``required``; no other required ones.

    ``optional``: of those, the ones a method may leave out (it is called with exactly what it takes).
    """
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
        if arg not in params and not takes_kwargs and arg not in optional:
            raise ContractError(f"{kind} method {name}() of {_label(cls)} must accept the keyword argument {arg!r}")
    for p in params.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty and p.name not in required:
            raise ContractError(
                f"{kind} method {name}() of {_label(cls)} requires {p.name!r}, which the engine never passes"
            )


REGULARIZER_NEEDS: dict[str, frozenset[str]] = {
    "discriminator": frozenset({"step", "labels", "parameters", "rng", "discriminator", "discriminator_outputs",
                                "real", "fake", "real_outputs", "fake_outputs"}),
    "generator": frozenset({"step", "labels", "parameters", "rng", "fake", "generate"}),
}
"""What a regulariser's ``__call__`` may ask for, by its network (see ``Regularizer`` and the README)."""

FEEDBACK_KEYWORDS = frozenset({"step", "losses", "real"})
"""What a ``feedback`` method may take."""

CONTEXT_INPUTS = frozenset({"z", "labels", "truncation_psi"})
"""What every context producer may read, beside the latent's other draws and earlier producers' entries."""


def is_legacy_loss(obj: Any) -> bool:
    """A loss written for the earlier contract (``discriminator_loss(*, real_logits, fake_logits)``)."""
    method = getattr(obj, "discriminator_loss", None)
    try:
        return method is not None and "real_logits" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _check_loss(kind: str, obj: Any) -> None:
    if not inspect.isclass(obj):
        raise ContractError(f"a loss must be a class with discriminator_loss() and generator_loss(), got {_label(obj)}")
    needs_real = bool(capability(obj, "generator_needs_real", kind="loss"))
    if is_legacy_loss(obj):  # the earlier contract, adapted (with a warning) where it is built
        _keyword_only(obj, "discriminator_loss", "loss", ("real_logits", "fake_logits"))
        _keyword_only(obj, "generator_loss", "loss", ("fake_logits", "real_logits") if needs_real else ("fake_logits",))
        _check_feedback(kind, obj)
        return
    _keyword_only(obj, "discriminator_loss", "loss", ("real", "fake", "labels"), optional=("labels",))
    _keyword_only(obj, "generator_loss", "loss", ("fake", "real", "labels") if needs_real else ("fake", "labels"),
                  optional=("labels",))
    _check_feedback(kind, obj)


def _check_regularizer(kind: str, obj: Any) -> None:
    network = capability(obj, "network", kind="regularizer")
    if network not in REGULARIZER_NEEDS:
        raise ContractError(f"regularizer {_label(obj)}: network must be 'discriminator' or 'generator', got {network!r}")
    if inspect.isclass(obj):  # a factory function's result can only be checked when called
        if "__call__" not in {name for klass in obj.__mro__ if klass is not object for name in vars(klass)}:
            raise ContractError(f"regularizer class {_label(obj)} has no __call__(self, *, <what it needs>)")
        _check_needs(obj, "__call__", "regularizer", REGULARIZER_NEEDS[network],
                     f"a {network} regularizer")
    _check_feedback(kind, obj)


def _check_needs(obj: Any, name: str, kind: str, vocabulary: frozenset[str], what: str) -> None:
    """``obj.name`` takes keyword-only arguments, each one of ``vocabulary``."""
    sig = _method(obj, name, kind) if inspect.isclass(obj) else inspect.signature(getattr(obj, name))
    for p in sig.parameters.values():
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                      inspect.Parameter.VAR_POSITIONAL):
            raise ContractError(f"{kind} method {name}() of {_label(obj)} must take keyword-only arguments, but "
                                f"{p.name!r} is positional (write `def {name}(self, *, ...)`)")
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in vocabulary:
            raise ContractError(f"{kind} method {name}() of {_label(obj)} asks for {p.name!r}, which {what} is "
                                f"never given (it may ask for: {', '.join(sorted(vocabulary))})")


def _check_feedback(kind: str, obj: Any) -> None:
    if capability(obj, "feedback", kind=kind) is not None or (
            inspect.isclass(obj) and callable(inspect.getattr_static(obj, "feedback", None))):
        _check_needs(obj, "feedback", kind, FEEDBACK_KEYWORDS, "feedback")


def _check_context(kind: str, obj: Any) -> None:
    _check_network(kind, obj)
    provides = inspect.getattr_static(obj, "provides", None) if inspect.isclass(obj) else getattr(obj, "provides", None)
    if not isinstance(provides, dict) or not provides:
        raise ContractError(f"context producer {_label(obj)} must declare `provides = {{entry: 'shared' | "
                            "'per_layer'}}` as a class attribute")
    for entry, how in provides.items():
        if how not in ("shared", "per_layer") or not isinstance(entry, str) or not entry.isidentifier():
            raise ContractError(f"context producer {_label(obj)}: provides[{entry!r}] must be 'shared' or "
                                f"'per_layer' under an identifier, got {how!r}")


def _check_latent(kind: str, obj: Any) -> None:
    if inspect.isclass(obj):
        _method(obj, "draw", kind)


def _check_controller(kind: str, obj: Any) -> None:
    if not inspect.isclass(obj):
        raise ContractError(f"a controller must be a class with attach(), feedback(), state_dict() and "
                            f"load_state_dict(), got {_label(obj)}")
    for name in ("attach", "state_dict", "load_state_dict"):
        _method(obj, name, kind)
    _check_needs(obj, "attach", kind, frozenset({"modules"}), "attach")
    _check_needs(obj, "feedback", kind, FEEDBACK_KEYWORDS, "feedback")


def _check_update_rule(kind: str, obj: Any) -> None:
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


def _check_network_instance(kind: str, obj: Any) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and not isinstance(obj, torch.nn.Module):
        raise ContractError(f"{kind} {_label(type(obj))} must build a torch.nn.Module, got {type(obj).__name__}")


def _check_metric_instance(kind: str, obj: Any) -> None:
    if not capability(obj, "needs_inception_features", kind="metric") and capability(obj, "bind", kind="metric") is None:
        raise ContractError(f"metric {_label(type(obj))} sets needs_inception_features = False but has no "
                            "bind(*, data, registry=None) giving its own detector")
    if capability(obj, "needs_labels", kind="metric") and not _accepts(obj.compute, "fake_labels"):
        raise ContractError(f"metric {_label(type(obj))} sets needs_labels = True but its compute() takes no "
                            "fake_labels keyword")
    if capability(obj, "needs_real_labels", kind="metric") and not _accepts(obj.compute, "real_labels"):
        raise ContractError(f"metric {_label(type(obj))} sets needs_real_labels = True but its compute() takes "
                            "no real_labels keyword")


# ---------------------------------------------------------------------------------------------
# The table of kinds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of component, declared once: everything ganforge knows about it."""

    name: str
    protocol: type
    """The interface a built component offers (checked by ``check_instance``)."""
    interface: str
    """``protocol`` in words (markdown), for documentation (``kinds_markdown``)."""
    blueprint: tuple[str, ...]
    """Where a blueprint names one (``generator.blocks``, ``loss``, ``train.eval_metrics``...)."""
    capabilities: Mapping[str, Capability] = field(default_factory=dict)
    context_params: frozenset[str] = frozenset()
    """Constructor arguments the assembler supplies (inferred from the stack); never set in a blueprint."""
    stack_order: int | None = None
    """A network kind (stem, blocks, head, attention): its place in the order a stack's ``type`` is
    looked up in. Network components build ``nn.Module``s and give every setting but the context
    parameters a default (both checked)."""
    check: Callable[[str, Any], None] | None = None
    """The kind's own rule for the registered class or factory (after the shared settings rules)."""
    check_built: Callable[[str, Any], None] | None = None
    """The kind's own rule for a built component (after its interface and capability types)."""

    @property
    def network(self) -> bool:
        return self.stack_order is not None


_STACK_CONTEXT = frozenset({"in_channels", "in_features", "in_size", "num_classes"})
_STACK_SLOTS = tuple(f"{net}.{part}" for net in ("generator", "discriminator")
                     for part in ("stem", "blocks", "attention", "head"))
_NETWORK_INTERFACE = "`NetworkModule`: an `nn.Module` whose `forward(x)` or `forward(x, labels)` maps a batch"


def _network_kind(name: str, stack_order: int) -> Kind:
    return Kind(name, NetworkModule, _NETWORK_INTERFACE, _STACK_SLOTS, _NETWORK_CAPABILITIES,
                context_params=_STACK_CONTEXT, stack_order=stack_order, check=_check_network)


KIND_TABLE: dict[str, Kind] = {kind.name: kind for kind in (
    _network_kind("layer", stack_order=1),
    _network_kind("block", stack_order=0),  # a stack's `type` is looked up as a block first
    _network_kind("head", stack_order=2),
    Kind("loss", Loss, "`Loss`: `discriminator_loss(*, real, fake[, labels])`, "
         "`generator_loss(*, fake[, real][, labels])` (records.DiscriminatorOutput, records.LabelPair)", ("loss",),
         _LOSS_CAPABILITIES, check=_check_loss),
    Kind("regularizer", Regularizer, "`Regularizer`: `__call__(*, <needs>) -> scalar`, needs from "
         "`REGULARIZER_NEEDS[network]`", ("regularizers",), _REGULARIZER_CAPABILITIES, check=_check_regularizer),
    Kind("latent", Latent, "`Latent`: `draw(n, *, generator, device) -> {'z': (n, latent_dim), ...}`",
         ("generator.latent",), _caps(_REQUIRES), context_params=frozenset({"latent_dim"}), check=_check_latent),
    Kind("context", ContextProducer, "`ContextProducer`: an `nn.Module`, `provides`, `forward(*, <inputs>) -> "
         "{entry: tensor}`", ("generator.context",), _CONTEXT_CAPABILITIES,
         context_params=frozenset({"latent_dim", "num_classes", "consumers"}), check=_check_context),
    Kind("controller", Controller, "`Controller`: `attach(*, modules)`, `feedback(*, step, losses, real)`, "
         "`state_dict()`, `load_state_dict(state)`", ("controllers",), _caps(_REQUIRES), check=_check_controller),
    Kind("update_rule", UpdateRule, "`UpdateRule`: `apply(plan)`", ("update_rule",), check=_check_update_rule),
    Kind("optimizer", OptimizerFactory, "`OptimizerFactory`: `(params) -> torch.optim.Optimizer`",
         ("optimizers.generator", "optimizers.discriminator")),
    Kind("init", InitScheme, "`InitScheme`: `(network) -> None`", ("generator.init", "discriminator.init")),
    Kind("dataset", Dataset, "`Dataset`: `__len__`, `__getitem__(i) -> (image, label)`", ("data",),
         _DATASET_CAPABILITIES),
    Kind("metric", Metric, "`Metric`: `name`, `compute(*, real, fake, fake_logits=None, real_stats=None"
         "[, fake_labels=None][, real_labels=None]) -> dict`", ("train.eval_metrics",), _METRIC_CAPABILITIES,
         check_built=_check_metric_instance),
)}
"""Every kind of component, in listing order. The one place a kind is declared."""

KINDS: tuple[str, ...] = tuple(KIND_TABLE)
"""The kinds' names, in listing order (a view of ``KIND_TABLE``)."""

NETWORK_KINDS: tuple[str, ...] = tuple(sorted((k.name for k in KIND_TABLE.values() if k.network),
                                              key=lambda name: KIND_TABLE[name].stack_order))
"""The kinds a network stack's ``type`` may name, in lookup order (a view of ``KIND_TABLE``)."""


def kinds_markdown() -> str:
    """``KIND_TABLE`` as a markdown table: kind, interface, context parameters, capabilities (defaults)."""
    rows = ["| kind | interface | context (from the stack) | capabilities (default) |", "|---|---|---|---|"]
    done: set[str] = set()
    for kind in KIND_TABLE.values():
        if kind.name in done:
            continue
        same = [k.name for k in KIND_TABLE.values() if (k.interface, k.context_params) ==
                (kind.interface, kind.context_params) and k.capabilities is kind.capabilities]
        done.update(same)
        caps = ", ".join(f"`{c.name}` ({'none' if c.method else c.default})" for c in kind.capabilities.values())
        context = ", ".join(f"`{name}`" for name in sorted(kind.context_params))
        rows.append(f"| {', '.join(same)} | {kind.interface} | {context or 'none'} | {caps or 'none'} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Reading capabilities, checking components
# ---------------------------------------------------------------------------------------------


def _declared(name: str, kind: str | None) -> Capability:
    if kind is not None and kind not in KIND_TABLE:
        raise ValueError(f"unknown component kind {kind!r} (known: {', '.join(KIND_TABLE)})")
    kinds = [kind] if kind is not None else list(KIND_TABLE)
    for k in kinds:
        if name in KIND_TABLE[k].capabilities:
            return KIND_TABLE[k].capabilities[name]
    where = f"kind {kind!r}" if kind is not None else "any kind"
    raise ValueError(f"{name!r} is not a declared capability of {where} (see ganforge.contracts.KIND_TABLE)")


def capability(obj: Any, name: str, *, kind: str | None = None) -> Any:
    """The value of the declared capability ``name`` on ``obj``, or its declared default.

    ``name`` must be declared for ``kind`` (for some kind when ``kind`` is omitted), else
    ``ValueError``: reading an undeclared flag is a programming error. A method capability gives
    the bound method, or None when ``obj`` does not offer it.
    """
    cap = _declared(name, kind)
    value = getattr(obj, name, cap.default)
    if cap.method:
        return value if callable(value) else None
    return value


def batch_statistics(module: Any) -> bool:
    """Whether ``module`` normalises with its batch's statistics: its ``batch_statistics`` capability, else
    whether it is one of torch's batch norms."""
    declared = capability(module, "batch_statistics", kind="layer")
    if declared is not None:
        return bool(declared)
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def is_attention(module: Any) -> bool:
    """Whether ``module`` is an attention layer: it offers the ``attention_map`` capability."""
    return capability(module, "attention_map", kind="layer") is not None


def _check_capability_values(kind: str, obj: Any) -> None:
    spec = KIND_TABLE.get(kind)
    for cap in (spec.capabilities if spec is not None else {}).values():
        value = inspect.getattr_static(obj, cap.name, None) if inspect.isclass(obj) else getattr(obj, cap.name, None)
        if value is None:
            continue
        if cap.method:
            if not callable(value) and not isinstance(value, (staticmethod, classmethod)):
                raise ContractError(f"{kind} {_label(obj)}: {cap.name} must be a method ({cap.doc})")
        elif isinstance(value, (property, staticmethod, classmethod)):
            continue  # computed per instance; checked on the built component
        elif not isinstance(value, cap.types) or (bool not in cap.types and isinstance(value, bool)):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in cap.types)
            raise ContractError(f"{kind} {_label(obj)}: capability {cap.name} must be {names}, "
                                f"got {type(value).__name__} ({cap.doc})")


def check_instance(kind: str, obj: Any) -> None:
    """Raise ``ContractError`` when a built component does not offer its kind's interface or mis-types a capability."""
    spec = KIND_TABLE[kind]
    interface = spec.protocol
    if spec.network:
        _check_network_instance(kind, obj)
    if not isinstance(obj, interface):
        missing = [name for name in interface.__protocol_attrs__ if not hasattr(obj, name)] \
            if hasattr(interface, "__protocol_attrs__") else []
        raise ContractError(f"{kind} {_label(type(obj))} does not offer the {interface.__name__} interface"
                            + (f" (missing {', '.join(sorted(missing))})" if missing else ""))
    _check_capability_values(kind, obj)
    if spec.check_built is not None:
        spec.check_built(kind, obj)


def check_contract(kind: str, obj: Any) -> None:
    """Raise ``ContractError`` naming the first rule ``obj`` breaks as a component of ``kind``."""
    check_settings(kind, obj)
    _check_capability_values(kind, obj)
    spec = KIND_TABLE.get(kind)
    if spec is not None and spec.check is not None:
        spec.check(kind, obj)
