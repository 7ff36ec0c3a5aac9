"""Will the networks fit? A memory estimate from the meta-device plan, checked before allocating.

``assemble`` already builds every component on PyTorch's meta device (shapes, no storage), so
the plan knows each layer's parameter and buffer bytes and its output shape. From those alone:

* **training** (both networks, the first ``NetworkPlan.build`` with ``initialise=True``)::

      W_G, W_D   parameter bytes (element size of each parameter: 4 for fp32)
      B_G, B_D   buffer bytes (batch-norm statistics, spectral-norm u/v)
      k_role     optimiser state tensors per parameter: 2 for adam/adamw, 1 for rmsprop, else 0
      b          micro-batch per process = batch_size // (grad_accumulation · WORLD_SIZE), at least 1
      e          bytes per activation element: 4 for train.precision fp32, else 2
      A_G, A_D   Σ over layers of the layer's output elements per image

      need = (2 + k_G) · W_G + B_G + (2 + k_D) · W_D + B_D      weights, gradients, optimiser state
           + [W_G + B_G if an ``ema`` update rule is present]   the EMA copy of G
           + e · max(b · (A_G + A_D), 2b · A_D)                 one training batch's activations

  The activation term counts every layer's output once, as if each were the only tensor kept for
  backward: a real residual block keeps several intermediates per output (normalisation, the
  activation, the shortcut), so the true figure is larger. The estimate is therefore a *floor*:
  a blueprint it refuses cannot train on the device, one it accepts may still run out of memory
  (the trainer turns that into its own one-line error naming ``train.batch_size``).

* **a restored network** (``initialise=False``: ``sample``, ``evaluate``, ``attention``):
  its own ``W + B``.

Available memory: on CUDA the free device memory plus what PyTorch's caching allocator has
reserved but not used; on the CPU the smallest of ``MemAvailable`` (``/proc/meminfo``, else
``sysconf(SC_AVPHYS_PAGES)``), the cgroup's ``memory.max`` less ``memory.current`` (v1:
``limit_in_bytes`` less ``usage_in_bytes``) and ``RLIMIT_AS`` less this process's ``VmSize``.
Nothing is counted per channel or per element: the cost is a loop over the plan's layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import GanforgeError

if TYPE_CHECKING:
    from .assembly import Assembly, LayerInfo, NetworkPlan

GB = 1e9
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "rmsprop": 1}


@dataclass
class MemoryEstimate:
    """What building (and, for training, running one step of) the networks needs, in bytes."""

    total: int
    weights: int        # parameters and buffers, EMA copy included
    gradients: int
    optimizer: int
    activations: int
    micro_batch: int
    largest_layer: "LayerInfo | None"
    largest_bytes: int  # the largest layer's part: its weights, gradients, optimiser state and EMA copy
    key: str            # the blueprint key to change


def estimate_training(assembly: "Assembly") -> MemoryEstimate:
    """The training footprint of both networks (see the module docstring for the formula)."""
    bp = assembly.loaded.blueprint
    train = bp.train
    world = max(1, _int_env("WORLD_SIZE", 1))
    micro_batch = max(1, train.batch_size // (train.grad_accumulation * world))
    element = 4 if str(getattr(train, "precision", "fp32")) == "fp32" else 2
    ema = any(rule.type == "ema" for rule in bp.update_rule)

    weights = gradients = optimizer = 0
    largest: tuple[int, LayerInfo | None, NetworkPlan | None] = (-1, None, None)
    for role, plan in (("generator", assembly.generator), ("discriminator", assembly.discriminator)):
        states = OPTIMIZER_STATES.get(getattr(bp.optimizers, role).type, 0)
        copies = 1 + (1 if ema and role == "generator" else 0)
        weights += copies * (plan.param_bytes + plan.buffer_bytes)
        gradients += plan.param_bytes
        optimizer += states * plan.param_bytes
        for layer in plan.layers:
            part = (1 + copies + states) * layer.param_bytes + copies * layer.buffer_bytes
            if part > largest[0]:
                largest = (part, layer, plan)
    a_g, a_d = _activation_elements(assembly.generator), _activation_elements(assembly.discriminator)
    activations = element * max(micro_batch * (a_g + a_d), 2 * micro_batch * a_d)
    parameters_part = weights + gradients + optimizer
    part, layer, plan = largest
    if activations > parameters_part or layer is None or plan is None:
        key = "train.batch_size"
    else:
        key = responsible_key(plan, layer)
    return MemoryEstimate(total=parameters_part + activations, weights=weights, gradients=gradients,
                          optimizer=optimizer, activations=activations, micro_batch=micro_batch,
                          largest_layer=layer, largest_bytes=max(part, 0), key=key)


def estimate_weights(plan: "NetworkPlan") -> MemoryEstimate:
    """One network's parameters and buffers: what a restored (inference) network allocates."""
    weights = plan.param_bytes + plan.buffer_bytes
    layer = max(plan.layers, key=lambda l: l.param_bytes + l.buffer_bytes, default=None)
    return MemoryEstimate(total=weights, weights=weights, gradients=0, optimizer=0, activations=0, micro_batch=0,
                          largest_layer=layer,
                          largest_bytes=0 if layer is None else layer.param_bytes + layer.buffer_bytes,
                          key=responsible_key(plan, layer) if layer is not None else plan.role)


def _activation_elements(plan: "NetworkPlan") -> int:
    total = 0
    for layer in plan.layers:
        count = 1
        for size in layer.output_shape:
            count *= int(size)
        total += count
    return total


def responsible_key(plan: "NetworkPlan", layer: "LayerInfo") -> str:
    """The blueprint key with the largest integer value among those that size ``layer``.

    Candidates are the layer's own integer settings (``channels``, ...) and the key that set the
    first dimension of its input: the previous layer's ``channels`` (followed back through layers
    that keep the channel count, such as attention), or ``generator.latent_dim`` / ``data.channels``.
    """
    source = plan.input_key or None
    for current in plan.layers:
        if current is layer:
            break
        source = _output_source(current, source)
    candidates: list[tuple[int, int, str]] = []
    for name, value in layer.settings.items():
        if isinstance(value, int) and not isinstance(value, bool):
            candidates.append((value, 1, layer.setting_keys.get(name, f"{layer.path}.{name}")))
    if source and layer.input_shape:
        candidates.append((int(layer.input_shape[0]), 0, source))
    if not candidates:
        return layer.path
    return max(candidates)[2]


def _output_source(layer: "LayerInfo", source: str | None) -> str | None:
    out = layer.output_shape[0] if layer.output_shape else None
    channels = layer.settings.get("channels")
    if isinstance(channels, int) and channels == out:
        return layer.setting_keys.get("channels", f"{layer.path}.channels")
    if layer.input_shape and out == layer.input_shape[0]:
        return source
    return None


# -- what the device has -------------------------------------------------------------------------

def available_memory(device: torch.device | str) -> tuple[int | None, str]:
    """Bytes that can still be allocated on ``device`` and where the figure comes from (None: unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        except Exception:  # no driver, or a device that cannot be queried: do not guess
            return None, "unknown"
        return int(free + max(cached, 0)), "free CUDA memory"
    if device.type != "cpu":
        return None, "unknown"
    limits: list[tuple[int, str]] = []
    mem = _meminfo_available()
    if mem is not None:
        limits.append((mem, "available RAM"))
    cgroup = _cgroup_left()
    if cgroup is not None:
        limits.append((cgroup, "cgroup memory limit"))
    address = _address_space_left()
    if address is not None:
        limits.append((address, "RLIMIT_AS"))
    if not limits:
        return None, "unknown"
    return min(limits)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" means no limit


def _cgroup_left() -> int | None:
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is None or limit >= 1 << 60:  # v1 writes a huge number for "no limit"
            continue
        usage = _read_int(usage_file) or 0
        return max(limit - usage, 0)
    return None


def _address_space_left() -> int | None:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    return max(soft - used, 0)


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# -- the check -----------------------------------------------------------------------------------

def check_training(assembly: "Assembly", device: torch.device | str) -> None:
    """Refuse (a GanforgeError naming the key to change) when training both networks cannot fit on ``device``.

    Called by whoever builds the networks for training, before the first is allocated. Checked once per
    assembly and device: a second call for the same pair does nothing (the first checked both networks).
    """
    device = torch.device(device)
    if device.type == "meta":
        return
    where = str(device)
    if where in assembly._training_checked:
        return
    assembly._training_checked.add(where)
    _refuse_if_short(estimate_training(assembly), what="training", device=device, assembly=assembly)


def check_weights(plan: "NetworkPlan", device: torch.device | str, *, assembly: "Assembly | None" = None) -> None:
    """Refuse when ``plan``'s weights (a restored network: ``sample``, ``evaluate``, ``attention``) cannot fit.

    ``assembly`` (the one ``plan`` belongs to) lets the error name the blueprint file as well as the key.
    """
    device = torch.device(device)
    if device.type == "meta":
        return
    _refuse_if_short(estimate_weights(plan), what=f"the {plan.role}'s weights", device=device, assembly=assembly)


def _refuse_if_short(estimate: MemoryEstimate, *, what: str, device: torch.device,
                     assembly: "Assembly | None") -> None:
    available, source = available_memory(device)
    if available is None or estimate.total <= available:
        return
    message = refusal_message(estimate, what=what, device=device, available=available, source=source)
    if assembly is not None:
        raise assembly.loaded.error(message, estimate.key)
    raise GanforgeError(f"{estimate.key}: {message}")


def refusal_message(estimate: MemoryEstimate, *, what: str, device: torch.device, available: int,
                    source: str) -> str:
    parts = [f"weights {_gb(estimate.weights)}"]
    if estimate.gradients:
        parts.append(f"gradients {_gb(estimate.gradients)}")
    if estimate.optimizer:
        parts.append(f"optimiser state {_gb(estimate.optimizer)}")
    if estimate.activations:
        parts.append(f"activations of {estimate.micro_batch} images {_gb(estimate.activations)}")
    text = (f"{what} needs at least {_gb(estimate.total)} ({', '.join(parts)}) but {device} has "
            f"{_gb(available)} ({source})")
    layer = estimate.largest_layer
    if estimate.key == "train.batch_size":
        return text + "; lower train.batch_size (or raise train.grad_accumulation) or the resolution"
    if layer is not None:
        text += (f"; the largest part is {layer.path} ({layer.component}, {layer.params:,} parameters, "
                 f"{_gb(estimate.largest_bytes)})")
    return text + f": lower {estimate.key}"


def _gb(count: int) -> str:
    value = count / GB
    return f"{value:,.1f} GB" if value >= 0.1 else f"{value:.3f} GB"
