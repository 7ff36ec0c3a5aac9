"""A run's ``metrics.jsonl`` as PNG figures: losses, attention γ, evaluation metrics.

Uses matplotlib's object API (``Figure`` + Agg), so no pyplot state or backend switch leaks
into the caller; matplotlib is imported inside the functions that draw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import GanforgeError
from ..engine.run_dir import RunDir

__all__ = ["read_log", "plot_run", "plot_losses", "plot_gamma", "plot_metrics"]



def gamma_path(run_dir: Path) -> Path:
    """The one place γ's plot goes for a run: ``RUN/plots/gamma.png`` (``plot`` and ``attention`` alike)."""
    return RunDir(Path(run_dir)).plots / "gamma.png"  # where `attention` writes it; `plot` writes RUN/plots too
EVALUATION = "evaluation"
# Fields of an evaluation entry that are bookkeeping, not metrics.
_NOT_METRICS = {"step", "time", "event"}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``metrics.jsonl``; a truncated last line (a run still writing) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise GanforgeError(f"{path}: no such log file (a run folder has metrics.jsonl once it has logged a step)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break  # the last line is still being written (or the run was killed mid-write)
            raise GanforgeError(f"{path}:{number}: not a JSON line ({err.msg})") from None
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    if not records:
        raise GanforgeError(f"{path}: the log has no entries yet")
    return records


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write ``losses.png``, ``gamma.png`` and ``metrics.png`` (those the log has data for) into ``out_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GanforgeError(f"{run_dir}: no such run folder")
    records = read_log(RunDir(run_dir).metrics)
    out_dir = Path(out_dir)
    written = [
        plot_losses(records, out_dir / "losses.png"),
        plot_gamma(records, out_dir / "gamma.png"),
        plot_metrics(records, out_dir / "metrics.png"),
    ]
    paths = [path for path in written if path is not None]
    if not paths:
        raise GanforgeError(f"{RunDir(run_dir).metrics}: nothing to plot (no losses, γ or evaluation metrics)")
    return paths


def training_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event", "train") != EVALUATION]


def evaluation_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == EVALUATION]


def plot_losses(records: list[dict[str, Any]], out: Path) -> Path | None:
    """d_loss and g_loss against step; None (nothing written) when the log has no losses."""
    series = {name: _series(training_records(records), lambda r, n=name: r.get(n)) for name in ("d_loss", "g_loss")}
    series = {label: points for label, points in series.items() if points}
    if not series:
        return None
    figure, axes = _figure(1)
    ax = axes[0]
    for label, points in series.items():
        _line(ax, points, label={"d_loss": "discriminator", "g_loss": "generator"}[label])
    ax.set_title("losses")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return _save(figure, out)


def gamma_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Every attention γ in the log (declared scalars named ``gamma``), keyed ``G.<path>`` or ``D.<path>``.

    Logs written before the generator's keys had their ``G.`` prefix (``layers.2.gamma``) read the same.
    """

    def gammas(record: dict[str, Any]) -> dict[str, Any]:
        scalars = record.get("scalars")
        if not isinstance(scalars, dict):
            return {}
        return {_network_key(name): value for name, value in scalars.items() if name.endswith(".gamma")}

    training = training_records(records)
    names: dict[str, None] = {}
    for record in training:
        names.update(dict.fromkeys(gammas(record)))
    return {name: _series(training, lambda r, n=name: gammas(r).get(n)) for name in names}


def plot_gamma(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Each attention layer's γ against step, generator and discriminator in separate panels."""
    series = {name: points for name, points in gamma_series(records).items() if points}
    if not series:
        return None
    panels = {
        "generator": {_gamma_label(n[2:]): p for n, p in series.items() if n.startswith("G.")},
        "discriminator": {_gamma_label(n[2:]): p for n, p in series.items() if n.startswith("D.")},
    }
    panels = {title: lines for title, lines in panels.items() if lines}
    figure, axes = _figure(len(panels))
    for ax, (title, lines) in zip(axes, panels.items()):
        for label, points in lines.items():
            _line(ax, points, label=label)
        ax.axhline(0.0, color="0.6", linewidth=0.8, zorder=0)
        ax.set_title(f"{title} attention γ")
        ax.set_xlabel("step")
        ax.set_ylabel("γ")
        ax.legend(fontsize="small")
    return _save(figure, out)


def evaluation_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Each numeric field of the evaluation entries (nested dicts as ``a/b``) against step."""
    values: dict[str, dict[float, float]] = {}
    for record in evaluation_records(records):
        for key, value in _flatten({k: v for k, v in record.items() if k not in _NOT_METRICS}).items():
            if _is_number(value):
                values.setdefault(key, {})[float(record["step"])] = float(value)  # a re-evaluation replaces
    return {key: sorted(by_step.items()) for key, by_step in values.items()}


def plot_metrics(records: list[dict[str, Any]], out: Path) -> Path | None:
    """One panel per evaluation metric against step; None (nothing written) when no metric has a curve.

    A metric evaluated at one step only has no curve to draw, and gets no panel (its value is in the log).
    """
    series = {name: points for name, points in evaluation_series(records).items() if len(points) > 1}
    if not series:
        return None
    figure, axes = _figure(len(series))
    for ax, (name, points) in zip(axes, series.items()):
        _line(ax, points, label=name)
        ax.set_title(name)
        ax.set_xlabel("step")
    return _save(figure, out)


# -- helpers ---------------------------------------------------------------------------------
def _network_key(name: str) -> str:
    """``G.<path>`` / ``D.<path>``; an unprefixed name (older logs) is the generator's."""
    return name if name.startswith(("G.", "D.")) else f"G.{name}"


def _gamma_label(name: str) -> str:
    return name[: -len(".gamma")] if name.endswith(".gamma") else name


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(records: list[dict[str, Any]], get) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    by_step: dict[float, float] = {}
    for record in records:
        value = get(record)
        if _is_number(value):
            by_step[float(record["step"])] = float(value)
    return sorted(by_step.items())


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _figure(panels: int):  # type: ignore[no-untyped-def]
    """A figure of ``panels`` side-by-side axes (wrapping after three)."""
    from matplotlib.figure import Figure

    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(5.0 * columns, 3.6 * rows), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def _line(ax, points: list[tuple[float, float]], *, label: str) -> None:  # type: ignore[no-untyped-def]
    steps, values = zip(*points)
    ax.plot(steps, values, label=label, marker="o" if len(points) <= 30 else None, markersize=3)


def _save(figure, out: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write the PNG atomically (a viewer never sees a half-written file)."""
    out = Path(out)
    temporary = out.with_name(out.stem + ".tmp.png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(temporary, format="png")
        temporary.replace(out)
    except OSError as err:
        raise GanforgeError(f"{out}: cannot write the figure ({err.strerror or err})") from None
    return out
