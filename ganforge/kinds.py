"""The names a component may take, and the record of a broken plugin: what the registry, the plugin
index and the blueprint schema share.

The kinds themselves (their names, interfaces, capabilities, context parameters and checks) are
declared once, in ``ganforge.contracts.KIND_TABLE``. This module sits below it (it imports neither
torch nor pydantic), so the blueprint schema and ``ganforge --help`` can use the name rules cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""A component's (short) name."""

NAME_RULE = "lowercase letters, digits and '_'"
"""``NAME_PATTERN`` in words, for messages."""

QUALIFIED_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*:[a-z][a-z0-9_]*$")
"""``DIST:NAME``: a plugin's component picked by its (normalised) distribution name, e.g. ``my-pkg:hinge``."""


@dataclass
class BrokenPlugin:
    """A plugin entry that could not be loaded, kept for reporting."""

    distribution: str
    entry_point: str
    error: str
