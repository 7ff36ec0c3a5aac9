"""The study's numbers: one CSV row per run, and mean ± std per variant as markdown and CSV.

The std is the sample standard deviation over seeds (``statistics.stdev``, n − 1); with one
seed there is none. Markdown cells round to four significant digits; the CSV files keep every digit.
Runs that failed (diverged) count in no n; the markdown lists them under the table.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from .runner import RunResult
from .variants import StudyVariant

RUNS_CSV = "study.csv"
SUMMARY_CSV = "study-summary.csv"
MARKDOWN = "study.md"


@dataclass(frozen=True)
class Summary:
    """One variant's values of one metric over its seeds."""

    variant: StudyVariant
    metric: str
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def cell(self) -> str:
        if self.mean is None:
            return "—"
        return f"{self.mean:.4g}" if self.std is None else f"{self.mean:.4g} ± {self.std:.4g}"


def metric_keys(results: list[RunResult]) -> list[str]:
    """Every value any run reports, in the order they first appear."""
    keys: dict[str, None] = {}
    for result in results:
        keys.update(dict.fromkeys(result.values))
    return list(keys)


def summarise(results: list[RunResult], variants: list[StudyVariant]) -> list[list[Summary]]:
    """Per variant (in order), per metric key: the values of its finished seeds."""
    keys = metric_keys(results)
    return [[Summary(variant=v, metric=key, values=[r.values[key] for r in results
                                                     if r.variant == v and key in r.values]) for key in keys]
            for v in variants]


def markdown(results: list[RunResult], variants: list[StudyVariant]) -> str:
    """Variants as rows, metrics as columns, ``mean ± std`` cells, with the number of seeds."""
    keys = metric_keys(results)
    lines = [_row(["variant", "overrides", "n", *keys]), _row(["---"] * (3 + len(keys)))]
    for variant, row in zip(variants, summarise(results, variants)):
        n = sum(1 for r in results if r.variant == variant and not r.failed)
        overrides = "; ".join(variant.overrides) or "(blueprint)"
        lines.append(_row([_escape(variant.name), f"`{_escape(overrides)}`", str(n), *(s.cell() for s in row)]))
    failed = [f"- {r.variant.name}, seed {r.seed}: {r.failed}" for r in results if r.failed]
    return "\n".join(lines + (["", "Failed runs (not in n):", *failed] if failed else [])) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def write_tables(results: list[RunResult], variants: list[StudyVariant], out: Path) -> dict[str, Path]:
    """``study.md``, ``study.csv`` (a row per run) and ``study-summary.csv`` (a row per variant and metric)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = metric_keys(results)
    paths = {"markdown": out / MARKDOWN, "runs": out / RUNS_CSV, "summary": out / SUMMARY_CSV}
    runs = [["variant", "folder", "seed", "step", *keys, "failed"]]
    runs += [[r.variant.name, str(r.folder), r.seed, r.step,
              *(repr(r.values[k]) if k in r.values else "" for k in keys), r.failed or ""] for r in results]
    summary = [["variant", "metric", "n", "mean", "std"]]
    summary += [[s.variant.name, s.metric, s.n, _number(s.mean), _number(s.std)]
                for row in summarise(results, variants) for s in row]
    _write_whole(paths["markdown"], markdown(results, variants))
    _write_whole(paths["runs"], _csv_text(runs))
    _write_whole(paths["summary"], _csv_text(summary))
    return paths


def _csv_text(rows: list[list[object]]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _write_whole(path: Path, text: str) -> None:
    """Replace ``path`` whole (``durable.replacing``): a study killed mid-write leaves the old table, never half a one."""
    from ...engine.durable import replacing

    with replacing(path, what="study table") as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
