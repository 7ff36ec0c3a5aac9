"""The self-attention layer alone: fused kernel against explicit softmax(QKᵀ)V, per resolution.

Attention memory grows with the square of the number of positions, so this is where the
fused path matters most: at 128² the explicit map of one image has 16,384 × 4,096 entries.
Both paths run the same weights on the same inputs (bf16 autocast on CUDA, fp32 on a CPU),
forward and backward, and the table shows time, peak memory and how far apart they land.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

KERNELS = ("fused", "explicit")


@dataclass
class AttentionRow:
    size: int
    kernel: str
    ms: float | None  # median forward+backward time; None when it ran out of memory
    peak_memory_bytes: int | None  # above what inputs and weights already held (CUDA only)
    out_of_memory: bool = False


@dataclass
class AttentionComparison:
    size: int
    positions: int
    keys: int
    max_output_diff: float | None
    max_input_grad_diff: float | None
    output_scale: float | None  # max |output| of the explicit path, to read the differences against


@dataclass
class AttentionReport:
    rows: list[AttentionRow]
    comparisons: list[AttentionComparison]
    device: str
    device_name: str
    settings: dict[str, Any]

    def row(self, size: int, kernel: str) -> AttentionRow:
        return next(r for r in self.rows if r.size == size and r.kernel == kernel)

    def to_json(self) -> dict[str, Any]:
        from .training import environment

        return {"device": self.device, "device_name": self.device_name, **environment(), "settings": self.settings,
                "rows": [asdict(r) for r in self.rows], "comparisons": [asdict(c) for c in self.comparisons]}


def measure_attention(*, sizes: list[int], channels: int, batch: int, pooled: bool = True, device: str = "auto",
                      repeats: int = 5, warmup: int = 2, seed: int = 0) -> AttentionReport:
    """Time and compare both kernels at every size; a kernel that runs out of memory is reported, not fatal."""
    from ...errors import GanforgeError
    from ...components.layers.attention import SelfAttention
    from ...engine.distributed import place_process

    if channels % 8:
        raise GanforgeError(f"--channels: self_attention needs a multiple of 8, got {channels}")
    if pooled and any(size % 2 for size in sizes):
        raise GanforgeError(f"--resolutions: pooled attention needs even sizes, got {sizes}")
    dev = place_process(device).device
    rows, comparisons = [], []
    for size in sizes:
        torch.manual_seed(seed + size)
        modules = {kernel: SelfAttention(in_channels=channels, in_size=size, pooled=pooled, kernel=kernel).to(dev)
                   for kernel in KERNELS}
        with torch.no_grad():
            modules["fused"].gamma.fill_(1.0)  # γ = 0 would make the output the input: nothing to compare
        modules["explicit"].load_state_dict(modules["fused"].state_dict())
        x = torch.randn(batch, channels, size, size, device=dev)
        grad_out = torch.randn_like(x)
        results = {}
        for kernel, module in modules.items():
            row, result = _measure_one(module, x, grad_out, size=size, kernel=kernel, repeats=repeats, warmup=warmup)
            rows.append(row)
            results[kernel] = result
        n = size * size
        fused, explicit = results["fused"], results["explicit"]
        both = fused is not None and explicit is not None
        comparisons.append(AttentionComparison(
            size=size, positions=n, keys=n // 4 if pooled else n,
            max_output_diff=float((fused[0] - explicit[0]).abs().max()) if both else None,
            max_input_grad_diff=float((fused[1] - explicit[1]).abs().max()) if both else None,
            output_scale=float(explicit[0].abs().max()) if explicit is not None else None))
        del modules, x, grad_out, results
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    settings = {"sizes": sizes, "channels": channels, "batch": batch, "pooled": pooled, "repeats": repeats,
                "warmup": warmup, "precision": "bf16 autocast" if dev.type == "cuda" else "fp32"}
    return AttentionReport(rows=rows, comparisons=comparisons, device=str(dev), device_name=name, settings=settings)


def _measure_one(module: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor, *, size: int, kernel: str,
                 repeats: int, warmup: int) -> tuple[AttentionRow, tuple[torch.Tensor, torch.Tensor] | None]:
    from ...components.layers.spectral_norm import frozen_spectral_norm

    cuda = x.device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        inputs = x.detach().requires_grad_(True)
        with autocast, frozen_spectral_norm(module):  # both paths must see the same σ
            out = module(inputs)
        out.backward(grad_out.to(out.dtype))
        module.zero_grad(set_to_none=True)
        return out.detach().float(), inputs.grad.float()  # type: ignore[union-attr]

    try:
        for _ in range(warmup):
            step()
        peak = None
        if cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            before = torch.cuda.memory_allocated(x.device)
            result = step()
            torch.cuda.synchronize(x.device)
            peak = torch.cuda.max_memory_allocated(x.device) - before
        else:
            result = step()
        times = []
        for _ in range(repeats):
            times.append(_time(step, cuda=cuda))
    except torch.OutOfMemoryError:
        if cuda:
            torch.cuda.empty_cache()
        return AttentionRow(size=size, kernel=kernel, ms=None, peak_memory_bytes=None, out_of_memory=True), None
    return AttentionRow(size=size, kernel=kernel, ms=statistics.median(times) * 1e3, peak_memory_bytes=peak), result


def _time(step: Any, *, cuda: bool) -> float:
    if cuda:
        from .training import cuda_seconds

        return cuda_seconds(step)
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def format_attention_table(report: AttentionReport) -> str:
    from .training import environment

    s, env = report.settings, environment()
    lines = [f"self_attention, device {report.device} ({report.device_name}), torch {env['torch']}, "
             f"CUDA {env['cuda'] or '-'}; batch {s['batch']}, C={s['channels']}, pooled={s['pooled']}, "
             f"{s['precision']}; forward+backward, median of {s['repeats']} after {s['warmup']} warm-up",
             f"{'size':>7} {'keys':>6} {'fused ms':>9} {'explicit ms':>11} {'speed-up':>8} {'fused mem':>10} "
             f"{'explicit mem':>12} {'mem ratio':>9} {'max |Δout|':>10} {'max |Δgrad|':>11} {'max |out|':>9}"]
    for c in report.comparisons:
        fused, explicit = report.row(c.size, "fused"), report.row(c.size, "explicit")
        lines.append(
            f"{c.size:>4}×{c.size:<2} {c.keys:>6} {_ms(fused):>9} {_ms(explicit):>11} "
            f"{_ratio(explicit.ms, fused.ms):>8} {_mem(fused):>10} {_mem(explicit):>12} "
            f"{_ratio(explicit.peak_memory_bytes, fused.peak_memory_bytes):>9} {_num(c.max_output_diff):>10} "
            f"{_num(c.max_input_grad_diff):>11} {_num(c.output_scale):>9}")
    return "\n".join(lines)


def _ms(row: AttentionRow) -> str:
    return "OOM" if row.out_of_memory else f"{row.ms:.2f}"


def _mem(row: AttentionRow) -> str:
    if row.out_of_memory:
        return "OOM"
    return "n/a" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:,.0f} MiB"


def _ratio(slow: float | None, fast: float | None) -> str:
    return f"{slow / fast:.1f}×" if slow and fast else "n/a"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2e}"
