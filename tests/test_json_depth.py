"""The JSON nesting pre-scan: right on tricky strings, and linear on an unterminated one."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.json_depth import json_depth


def reference_depth(value) -> int:
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((reference_depth(child) for child in children), default=0)
    return 0


documents = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[{"\\x'), inner,
                                                                                      max_size=3), max_leaves=20)


@given(documents)
@settings(max_examples=200, deadline=None)
def test_depth_equals_the_parsed_documents_depth(value):
    text = json.dumps(value)
    assert json_depth(text) == json_depth(text.encode()) == reference_depth(json.loads(text))


def test_an_unterminated_string_of_escaped_quotes_is_scanned_in_linear_time():
    hostile = b'"' + b'\\"' * 200_000  # 400 KB; the old regex took ~19 s for 80 KB of this
    start = time.perf_counter()
    assert json_depth(hostile) == 0
    assert time.perf_counter() - start < 2.0
