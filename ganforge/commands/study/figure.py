"""The study as a picture: one panel per metric, mean ± std per variant, each seed as a dot."""

from __future__ import annotations

from pathlib import Path

from .runner import RunResult
from .table import summarise
from .variants import StudyVariant

FIGURE = "study.png"


def plot_study(results: list[RunResult], variants: list[StudyVariant], out: Path) -> Path | None:
    """Write ``out/study.png``; None (nothing written) when no run has a value yet."""
    from ..plots import _figure, _save

    rows = summarise(results, variants)
    keys = [s.metric for s in rows[0]] if rows else []
    if not keys:
        return None
    figure, axes = _figure(len(keys))
    positions = list(range(len(variants)))
    for column, (ax, key) in enumerate(zip(axes, keys)):
        cells = [row[column] for row in rows]
        shown = [(x, s) for x, s in zip(positions, cells) if s.mean is not None]
        ax.errorbar([x for x, _ in shown], [s.mean for _, s in shown], yerr=[s.std or 0.0 for _, s in shown],
                    fmt="o", capsize=4, color="C0", label="mean ± std")
        for x, s in shown:
            ax.scatter([x] * s.n, s.values, s=10, color="0.5", alpha=0.6, zorder=3)
        ax.set_title(f"{key} (mean ± std; dots: seeds)", fontsize="medium")
        ax.set_xticks(positions, [f"{v.name} (n={s.n})" for v, s in zip(variants, cells)], rotation=30, ha="right",
                      fontsize="small")
        ax.set_xlim(-0.5, len(variants) - 0.5)
    return _save(figure, out / FIGURE)
