"""The typed shape of a blueprint. Component settings are checked later, against the registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..kinds import NAME_PATTERN, NAME_RULE, QUALIFIED_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ComponentSpec(BaseModel):
    """``{type: NAME, ...settings}``: a registered component and its settings."""

    model_config = ConfigDict(extra="allow")

    type: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_name(cls, value: Any) -> Any:
        # `loss: hinge` is shorthand for `loss: {type: hinge}`.
        return {"type": value} if isinstance(value, str) else value

    @field_validator("type")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if QUALIFIED_PATTERN.match(value):  # DIST:NAME, a plugin's component picked explicitly
            return value
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(f"{value!r} is not a component name ({NAME_RULE}, "
                             "or DIST:NAME for a plugin's component)")
        return value


class AttentionSpec(ComponentSpec):
    """An attention layer placed after the first component that outputs ``resolution``×``resolution``."""

    resolution: int = Field(ge=1)
    type: str = "self_attention"


class NetworkSpec(_Strict):
    """A stack: optional stem, blocks, head; attention placed by resolution; shared defaults."""

    stem: ComponentSpec | None = None
    blocks: list[ComponentSpec] = Field(default_factory=list)
    head: ComponentSpec
    attention: list[AttentionSpec] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="settings given to every component of this network that accepts them (explicit settings win)",
    )
    init: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="default"))


class GeneratorSpec(NetworkSpec):
    latent_dim: int = Field(default=128, ge=1)
    latent: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="normal"),
                                  description="the latent component: what is drawn per image (z, mixing latents)")
    context: list[ComponentSpec] = Field(
        default_factory=list,
        description="context producers run at the start of every pass (shared class embedding, z chunks, "
                    "mapping network); stack components that declare an entry receive it")


class DiscriminatorSpec(NetworkSpec):
    pass


class GroupSpec(_Strict):
    """Optimiser settings for the parameters carrying one tag (``parameter_tags``)."""

    lr_multiplier: float = Field(default=1.0, gt=0, description="the group's learning rate is the network's times this")


class OptimizerSpec(ComponentSpec):
    """An optimiser and, per parameter tag, the settings of that tag's group."""

    groups: dict[str, GroupSpec] = Field(default_factory=dict)


class OptimizersSpec(_Strict):
    generator: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec(type="adam"))
    discriminator: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec(type="adam"))


class RegularizerSpec(ComponentSpec):
    """A regulariser; ``every: N`` runs it lazily (steps 0, N, 2N..., its value times N)."""

    every: int = Field(default=1, ge=1)


class DataSpec(ComponentSpec):
    """The dataset component; resolution, channels and classes also shape the networks."""

    resolution: int = Field(ge=1)
    channels: int = Field(default=3, ge=1)
    num_classes: int = Field(default=0, ge=0)

    def component_settings(self) -> dict[str, Any]:
        """What the dataset component is built with: its own settings plus the shape fields."""
        return {**self.settings, "resolution": self.resolution, "channels": self.channels,
                "num_classes": self.num_classes}


class TrainSpec(_Strict):
    """The ``train:`` section: how long, how big, how often to log, checkpoint, sample and evaluate.

    ``max_abs_loss`` (the divergence guard for finite losses) is off, null, by default: loss scales differ
    by orders of magnitude between losses and stages (hinge and non-saturating losses stay near 1, a WGAN
    critic's drifts into the thousands unharmed), so no one bound is safe for every blueprint, and off keeps
    existing runs exactly as they were. Non-finite losses stop a run whatever it says.
    """

    batch_size: int = Field(default=64, ge=1)
    steps: int = Field(default=10_000, ge=1)
    seed: int = 0
    grad_accumulation: int = Field(default=1, ge=1, description="micro-batches per optimiser step")
    precision: Literal["bf16", "fp32"] = "bf16"
    tf32: bool = Field(default=False, description="TF32 matrix units for fp32 matmuls and convolutions (CUDA)")
    deterministic: bool = Field(default=False, description="deterministic cuDNN algorithms, no autotuning (CUDA)")
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    fused_optimizer: bool = Field(default=True, description="fused (CUDA) optimiser kernels")
    joint_d_pass: bool = Field(default=True, description="real and generated images in one D pass when D is "
                               "batch-independent (no batch norm); same result as two passes, faster")
    channels_last: bool = True
    sync_batchnorm: bool = False
    num_workers: int = Field(default=4, ge=0)
    log_every: int = Field(default=50, ge=1)
    sample_every: int = Field(default=1000, ge=1)
    checkpoint_every: int = Field(default=1000, ge=1)
    keep_checkpoints: int = Field(default=3, ge=1)
    max_abs_loss: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="stop (exit 2, the last good checkpoint kept) at the first step whose D or G loss is larger "
        "than this in magnitude, e.g. 1e4 for hinge losses; null: off, only non-finite losses stop a run")
    eval_every: int | None = Field(default=None, ge=1, description="evaluate every N steps (off when null)")
    eval_images: int = Field(default=10_000, ge=2, description="generated (and reference) images per evaluation")
    eval_metrics: list[str] = Field(default_factory=lambda: ["fid"], min_length=1)
    eval_inception: str | None = Field(default=None, description="Inception TorchScript file (default: bundled)")
    eval_protocol: Literal["standard", "clean", "legacy"] = Field(
        default="standard", description="how images reach Inception: standard (uint8, TF1 bilinear: the TF "
        "reference's and torch-fidelity's), clean (clean-fid), legacy (ganforge 0.1)")


class Blueprint(_Strict):
    """A whole experiment. ``extends`` is resolved before validation."""

    name: str = ""
    description: str = ""
    generator: GeneratorSpec
    discriminator: DiscriminatorSpec
    loss: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="hinge"))
    regularizers: list[RegularizerSpec] = Field(default_factory=list)
    controllers: list[ComponentSpec] = Field(default_factory=list)
    update_rule: list[ComponentSpec] = Field(default_factory=list)
    optimizers: OptimizersSpec = Field(default_factory=OptimizersSpec)
    data: DataSpec
    train: TrainSpec = Field(default_factory=TrainSpec)

    @field_validator("update_rule", "regularizers", "controllers", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, (dict, str)) else value
