"""How deeply a JSON document nests, found before parsing it.

``json.loads`` recurses once per level, so a hostile file nested 100,000 deep ends in RecursionError
(or worse) before any check of ours runs. This scan is one linear pass over the tokens that matter
(a regex that matched whole strings backtracked quadratically on an unterminated one: 80 KB took 19 s).
"""

from __future__ import annotations

import re

_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def json_depth(raw: bytes | str) -> int:
    """The deepest ``[``/``{`` nesting outside strings (escaped quotes stay inside their string)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    depth = deepest = 0
    inside = False
    for token in _TOKENS.finditer(data):
        char = token.group()
        if char[:1] == b"\\":
            continue
        if char == b'"':
            inside = not inside
        elif not inside:
            depth += 1 if char in b"[{" else -1
            deepest = max(deepest, depth)
    return deepest
