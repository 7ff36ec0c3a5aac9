"""Where a generator's self-attention looks: SAGAN figure 1 for a trained run.

For a few generated images and query points (pixel coordinates of the output image), each
self-attention layer's softmax row for the query position nearest the point is reshaped to
the layer's key grid, upsampled to the image and overlaid as a heat map. Attention layers are
the modules offering the declared ``attention_map`` capability (``ganforge.contracts.is_attention``:
``attention_map(x) -> (B, N, N_keys)``, the same rule ``inspect`` uses), and their inputs
are captured with forward pre-hooks, so any architecture (plugins included) works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import capability, is_attention
from ..errors import GanforgeError

if TYPE_CHECKING:
    from ..engine.restore import RestoredRun

__all__ = ["AttentionLayer", "attention_figure", "capture_attention", "default_output", "default_points",
           "find_attention_layers", "parse_points", "query_map"]

Point = tuple[int, int]
POINT_COLOURS = ["#00e5ff", "#ff2bd6", "#b6ff00", "#ffb000", "#ffffff", "#ff4040", "#4080ff", "#000000"]


@dataclass
class AttentionLayer:
    """One attention module of a network: where it sits and what to call it in a figure."""

    path: str  # module path, e.g. "layers.2"
    label: str  # e.g. "self_attention (layers.2)"
    module: nn.Module


@dataclass
class CapturedAttention:
    """A layer's attention for a batch: (B, N, N_keys) with its query grid and key grid."""

    layer: AttentionLayer
    attention: torch.Tensor
    grid: tuple[int, int]
    key_grid: tuple[int, int]

    @property
    def title(self) -> str:
        h, w = self.grid
        return f"{self.layer.label} {h}×{w}"


def find_attention_layers(network: nn.Module) -> list[AttentionLayer]:
    """Every attention submodule (``is_attention``), outermost first, in forward order."""
    names = getattr(network, "names", None)
    layers: list[AttentionLayer] = []
    for path, module in network.named_modules():
        if not path or not is_attention(module):
            continue
        if any(path.startswith(found.path + ".") for found in layers):
            continue  # inside an attention module already listed
        component = type(module).__name__
        head, _, index = path.partition(".")
        if names is not None and head == "layers" and index.isdigit() and int(index) < len(names):
            component = names[int(index)]
        layers.append(AttentionLayer(path=path, label=f"{component} ({path})" if path != component else path,
                                     module=module))
    return layers


def default_points(image_size: int) -> list[Point]:
    """Three query points spread over the image (upper left, right, lower middle-left)."""
    spots = [(0.25, 0.25), (0.4, 0.75), (0.75, 0.4)]
    return [(min(image_size - 1, int(r * image_size)), min(image_size - 1, int(c * image_size))) for r, c in spots]


def parse_points(text: str) -> list[Point]:
    """``"r,c;r,c;..."`` → [(r, c), ...] in image pixel coordinates (row, column)."""
    points: list[Point] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        pieces = [p.strip() for p in part.split(",")]
        try:
            if len(pieces) != 2:
                raise ValueError
            points.append((int(pieces[0]), int(pieces[1])))
        except ValueError:
            raise GanforgeError(f"--points: {part.strip()!r} is not ROW,COLUMN (write e.g. --points \"4,4;12,8\")"
                                ) from None
    if not points:
        raise GanforgeError("--points: no points given (write e.g. --points \"4,4;12,8\")")
    return points


def query_map(attention: torch.Tensor, point: Point, image_size: int, grid: tuple[int, int],
              key_grid: tuple[int, int]) -> torch.Tensor:
    """The attention of the query position under ``point`` as an (image_size, image_size) map.

    ``attention`` is one image's (N, N_keys) softmax, queries over ``grid`` (h, w) and keys over
    ``key_grid`` (hk, wk), both flattened row-major. The image point (row, column) maps to query
    cell (row·h // image_size, column·w // image_size); that row of weights, reshaped to the key
    grid, is upsampled to the image by nearest neighbour (each key cell becomes a block).
    """
    h, w = grid
    hk, wk = key_grid
    if attention.dim() != 2 or tuple(attention.shape) != (h * w, hk * wk):
        raise ValueError(f"attention of shape {tuple(attention.shape)} does not match a {h}×{w} query grid and "
                         f"a {hk}×{wk} key grid (expected ({h * w}, {hk * wk}))")
    row, column = point
    if not (0 <= row < image_size and 0 <= column < image_size):
        raise ValueError(f"point {point} is outside the {image_size}×{image_size} image")
    query = (row * h // image_size) * w + column * w // image_size
    weights = attention[query].reshape(1, 1, hk, wk).float()
    return F.interpolate(weights, size=(image_size, image_size), mode="nearest")[0, 0]


def _key_grid(layer: AttentionLayer, grid: tuple[int, int], n_keys: int) -> tuple[int, int]:
    h, w = grid
    pooled = capability(layer.module, "pooled", kind="layer")
    candidates = {True: [(h // 2, w // 2)], False: [(h, w)]}.get(pooled, [(h, w), (h // 2, w // 2)])
    for hk, wk in candidates:
        if hk * wk == n_keys:
            return hk, wk
    raise GanforgeError(f"{layer.path}: its attention map has {n_keys} keys, which is neither the {h}×{w} input "
                        f"grid nor its 2×2-pooled {h // 2}×{w // 2}")


@torch.no_grad()
def capture_attention(network: nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
                      layers: Sequence[AttentionLayer]) -> tuple[torch.Tensor, list[CapturedAttention]]:
    """Run ``network`` once; return its images and every layer's attention for that batch."""
    inputs: dict[str, torch.Tensor] = {}

    def hook_for(path: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                inputs.setdefault(path, args[0].detach())  # first call only if a module is reused
        return hook

    handles = [layer.module.register_forward_pre_hook(hook_for(layer.path)) for layer in layers]
    try:
        images = network(z, labels)
    finally:
        for handle in handles:
            handle.remove()
    captured = []
    for layer in layers:
        x = inputs.get(layer.path)
        if x is None or x.dim() != 4:
            continue  # not on this forward path, or not an image-shaped input
        attention = layer.module.attention_map(x).float().cpu()
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        captured.append(CapturedAttention(layer, attention, grid, _key_grid(layer, grid, attention.shape[-1])))
    return images.float().cpu(), captured


def default_output(restored: "RestoredRun", target: str | Path | None = None) -> Path:
    """``RUN/attention.png`` for a run folder; ``<checkpoint>-attention.png`` next to a checkpoint file given
    directly as ``target``."""
    if target is not None and Path(target).is_file():
        return restored.checkpoint.with_name(restored.checkpoint.stem + "-attention.png")
    return restored.run_dir / "attention.png"


def attention_figure(restored: "RestoredRun", *, points: Sequence[Point] | None = None,
                     class_index: int | None = None, seed: int = 0, n: int = 4, out: Path | None = None) -> Path:
    """Draw the SAGAN-style attention figure for ``n`` generated images; returns the PNG path.

    Rows are images; the first column is the image with every query point marked, then one
    column per (point, attention layer) with that point's attention map overlaid.
    """
    from ..sampling.generation import latents

    generator = restored.generator
    layers = find_attention_layers(generator)
    if not layers:
        raise GanforgeError("this generator has no attention layers")
    if n < 1:
        raise GanforgeError(f"--n must be at least 1, got {n}")
    blueprint = restored.loaded.blueprint
    num_classes = int(blueprint.data.num_classes)
    if class_index is not None:
        if num_classes == 0:
            raise GanforgeError("--class: this generator is unconditional (data.num_classes is 0)")
        if not 0 <= class_index < num_classes:
            raise GanforgeError(f"--class {class_index} is out of range: this generator has classes "
                                f"0..{num_classes - 1}")

    device = next(iter(generator.parameters()), torch.empty(0)).device
    z = latents(n, blueprint.generator.latent_dim, generator=torch.Generator().manual_seed(seed), device=device,
                latent=getattr(generator, "latent", None))
    labels = None
    if num_classes > 0:
        labels = (torch.full((n,), class_index, dtype=torch.long) if class_index is not None
                  else torch.arange(n) % num_classes).to(device)
    images, captured = capture_attention(generator, z, labels, layers)
    if not captured:
        raise GanforgeError("this generator has no attention layers on its forward path")
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise GanforgeError(f"attention maps need square images, the generator makes {tuple(images.shape[1:])}")
    size = int(images.shape[-1])

    points = list(points) if points else default_points(size)
    for row, column in points:
        if not (0 <= row < size and 0 <= column < size):
            raise GanforgeError(f"--points: ({row},{column}) is outside the {size}×{size} generated image "
                                f"(rows and columns run 0..{size - 1})")
    out = Path(out) if out is not None else default_output(restored)
    which = "EMA generator" if restored.uses_ema else "generator"
    subtitle = f"{restored.run_dir.name} · step {restored.step} · {which} · seed {seed}"
    row_labels = ([f"class {int(k)}" for k in labels.tolist()] if labels is not None
                  else [f"image {i}" for i in range(n)])
    return _draw(images, captured, points, row_labels, subtitle, out)


def _as_rgb(image: torch.Tensor):  # type: ignore[no-untyped-def]
    """(C, H, W) in [-1, 1] → numpy (H, W, 3) in [0, 1]."""
    image = ((image.clamp(-1, 1) + 1) / 2)
    if image.shape[0] != 3:
        image = image.mean(0, keepdim=True).expand(3, -1, -1)
    return image.permute(1, 2, 0).numpy()


def _draw(images: torch.Tensor, captured: list[CapturedAttention], points: list[Point], row_labels: list[str],
          subtitle: str, out: Path) -> Path:
    from matplotlib.figure import Figure

    from .plots import _save

    n, size = images.shape[0], int(images.shape[-1])
    columns = 1 + len(points) * len(captured)
    cell = 1.9
    figure = Figure(figsize=(max(cell * columns, 4.6), cell * n + 1.0), dpi=100, layout="constrained")
    axes = figure.subplots(n, columns, squeeze=False)
    colours = [POINT_COLOURS[i % len(POINT_COLOURS)] for i in range(len(points))]

    def mark(ax, point: Point, colour: str) -> None:  # type: ignore[no-untyped-def]
        ax.plot([point[1]], [point[0]], marker="o", markersize=7, markerfacecolor=colour,
                markeredgecolor="black", markeredgewidth=1.2)

    for i in range(n):
        rgb = _as_rgb(images[i])
        ax = axes[i, 0]
        ax.imshow(rgb, interpolation="nearest")
        for point, colour in zip(points, colours):
            mark(ax, point, colour)
        ax.set_ylabel(row_labels[i])
        if i == 0:
            ax.set_title("generated", fontsize=9)
        column = 1
        for p, (point, colour) in enumerate(zip(points, colours)):
            for entry in captured:
                heat = query_map(entry.attention[i], point, size, entry.grid, entry.key_grid).numpy()
                low, high = float(heat.min()), float(heat.max())
                ax = axes[i, column]
                ax.imshow(rgb, interpolation="nearest")
                ax.imshow(heat, cmap="jet", alpha=0.55, vmin=low, vmax=max(high, low + 1e-12),
                          interpolation="nearest")
                mark(ax, point, colour)
                # How peaked the map is: its largest weight over the uniform weight 1/N_keys.
                n_keys = entry.key_grid[0] * entry.key_grid[1]
                ax.text(0.03, 0.03, f"peak {high * n_keys:.2f}× uniform", transform=ax.transAxes, fontsize=7,
                        color="white", va="bottom", ha="left",
                        bbox=dict(facecolor="black", alpha=0.5, edgecolor="none", pad=1.5))
                if i == 0:
                    ax.set_title(f"point {p + 1} ({point[0]},{point[1]})\n{entry.title}", fontsize=8,
                                 color="black")
                column += 1
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
    figure.suptitle("self-attention of each query point\n(heat: softmax weight over keys, min→max of each map)\n"
                    + subtitle, fontsize=8)
    return _save(figure, out)
