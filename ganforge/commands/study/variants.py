"""Study variants: a readable name, the folder it trains in, and the overrides that make it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ...errors import GanforgeError

BLUEPRINT_NAME = "blueprint"
MAX_SLUG = 60


@dataclass(frozen=True)
class StudyVariant:
    """One row of the study table; ``overrides`` go on top of the study's common ``--set``."""

    name: str
    slug: str
    overrides: list[str]


def parse_study_variant(text: str) -> StudyVariant:
    """``"name: KEY=VALUE; KEY=VALUE"``; the name is optional (text before the first ``:`` without ``=``).

    The overrides are split exactly as ``ganforge benchmark --variant`` splits them. Without a
    name the overrides themselves name the row; an empty text is the blueprint itself.
    """
    from ..benchmark.training import parse_variant

    head, colon, rest = text.partition(":")
    named = bool(colon) and "=" not in head
    name = head.strip() if named else ""
    if named and not name:
        raise GanforgeError(f"--variant {text!r}: empty name before ':' (write \"NAME: KEY=VALUE; ...\")")
    overrides = parse_variant(rest if named else text).overrides
    name = name or "; ".join(overrides) or BLUEPRINT_NAME
    return StudyVariant(name=name, slug=slugify(name), overrides=overrides)


def study_variants(texts: list[str] | tuple[str, ...]) -> list[StudyVariant]:
    """Every ``--variant`` (none: the blueprint alone), refusing two that would share a folder."""
    variants = [parse_study_variant(text) for text in texts] or [parse_study_variant("")]
    seen: dict[str, StudyVariant] = {}
    for variant in variants:
        other = seen.setdefault(variant.slug, variant)
        if other is not variant:
            raise GanforgeError(f"--variant {variant.name!r} and {other.name!r} would share the folder "
                                f"{variant.slug!r}: give them different names (\"NAME: KEY=VALUE; ...\")")
    return variants


def slugify(name: str) -> str:
    """A folder name from a variant name: lowercase letters, digits, ``.``, ``_`` and ``-``."""
    slug = re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-.") or "variant"
    if len(slug) > MAX_SLUG:  # long override lists: keep them apart by a short hash of the full name
        slug = slug[: MAX_SLUG - 9].rstrip("-.") + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return slug


def check_variants(blueprint: str, *, overrides: list[str], variants: list[StudyVariant]) -> list[Any]:
    """Load and assemble every variant (no weights) before anything trains; returns their ``Assembly``.

    A bad variant is reported by name, so an hour of training is never lost to a typo in the last one.
    """
    from ...registry import default_registry
    from ...engine.build import build_run

    registry = default_registry()
    assemblies = []
    for variant in variants:
        try:
            assembly = build_run(blueprint, overrides=[*overrides, *variant.overrides], registry=registry).assembly
        except GanforgeError as err:
            if not variant.overrides:
                raise
            raise GanforgeError(f"--variant {variant.name!r}: {err}") from err
        assemblies.append(assembly)
    return assemblies


def check_metrics(names: list[str]) -> list[str]:
    """Registered metric names, a former name replaced by the current one, or an error naming ``--metrics``.

    Current names, so that ``done.json`` lists each metric once under one name (``coverage`` and
    ``combination_coverage`` are the same metric).
    """
    from ...registry import default_registry

    if not names:
        raise GanforgeError("--metrics: name at least one metric, e.g. --metrics fid")
    registry = default_registry()
    current = []
    for name in names:
        try:
            current.append(registry.get("metric", name).name)
        except GanforgeError as err:
            raise GanforgeError(f"--metrics: {err}") from err
    return list(dict.fromkeys(current))
