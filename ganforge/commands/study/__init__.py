"""``ganforge study``: a blueprint's variants × seeds as ordinary runs, evaluated and tabulated.

Split by job: ``variants`` (names, folders, an early assembly check), ``runner`` (train, evaluate,
resume), ``parallel`` and ``worker`` (``--parallel N``: N runs at once, each its own process), ``table``
(mean ± std as markdown and CSV) and ``figure`` (one panel per metric).
Nothing here imports torch at module level.
"""

from __future__ import annotations

from .runner import RunResult, StudyOutcome, run_study
from .table import write_tables
from .variants import StudyVariant, check_variants, parse_study_variant, study_variants

__all__ = ["RunResult", "StudyOutcome", "StudyVariant", "check_variants", "parse_study_variant", "run_study",
           "study_variants", "write_tables"]
