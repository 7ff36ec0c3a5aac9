"""Kinds of component and the names they may take: what the registry and the plugin index share.

Both ``ganforge.registry`` and ``ganforge.plugins`` import this module, so the plugin index never
imports the registry (the registry uses the index; the index only calls back the registry it is given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS: tuple[str, ...] = (
    "layer",
    "block",
    "head",
    "loss",
    "regularizer",
    "update_rule",
    "optimizer",
    "init",
    "dataset",
    "metric",
)
"""Kinds of component. Network stacks accept ``layer``, ``block`` and ``head``."""

NETWORK_KINDS: tuple[str, ...] = ("block", "layer", "head")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class BrokenPlugin:
    """A plugin entry that could not be loaded, kept for reporting."""

    distribution: str
    entry_point: str
    error: str
