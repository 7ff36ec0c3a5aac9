"""The end of a study: tables and figure written, the markdown table returned for printing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .figure import plot_study
from .runner import StudyOutcome
from .table import write_tables
from .variants import StudyVariant


def write_report(outcome: StudyOutcome, variants: list[StudyVariant], out: Path, *,
                 report: Callable[[str], None]) -> str:
    """Write ``study.md``, ``study.csv``, ``study-summary.csv`` and ``study.png`` from the finished runs.

    Under torchrun only rank 0 does (``outcome.main``); the other processes write and print nothing.
    """
    if not outcome.main:
        return ""
    paths = [*write_tables(outcome.results, variants, out).values(), plot_study(outcome.results, variants, out)]
    for path in paths:
        if path is not None:
            report(f"wrote {path}")
    if outcome.stopped is not None:
        report(f"stopped during {outcome.stopped}; the tables hold the runs finished so far; "
               "rerun the same command to continue")
    return (out / "study.md").read_text(encoding="utf-8")
