"""Hostile blueprints (issue 10 §2): loading is bounded in time, memory, depth and file kind.

Each case ends in one BlueprintError line (exit 2) within ``LIMIT`` seconds. A guard alarm turns a
hang into a test failure instead of a stuck run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.blueprint import loading
from ganforge.blueprint.loading import load_with_extends
from ganforge.errors import BlueprintError, join_path
from support import TINY, assert_clean_failure

LIMIT = 10.0
"""Seconds a refusal may take; generous because CI machines are loaded (each takes well under 1 s)."""


class Hung(BaseException):
    """Raised by the guard alarm; a BaseException so no ``except Exception`` in the code under test eats it."""


@contextlib.contextmanager
def guard(seconds: float = LIMIT + 5) -> Iterator[None]:
    """Interrupt the test if it outlives ``seconds`` (Unix only; elsewhere the test just runs)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def warm_imports() -> None:
    """Import what ``inspect`` imports (torch included) once, outside every timed call."""
    import ganforge.assembly  # noqa: F401
    import ganforge.commands.inspection  # noqa: F401
    import ganforge.registry  # noqa: F401
    import ganforge.engine.planning  # noqa: F401


def refused(cli, *args: str, mentions: tuple[str, ...] = ()) -> str:
    """Run the CLI under the guard and check the hostile-input contract; returns the error line."""
    start = time.perf_counter()
    with guard():
        result = cli(*args)
    return assert_clean_failure(result, mentions=mentions, seconds=LIMIT, elapsed=time.perf_counter() - start)


# -- billion laughs --------------------------------------------------------------------------------

def billion_laughs(levels: int = 9) -> str:
    """Each level lists the previous one nine times: 9**levels nodes from a few hundred bytes."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_at_loading_under_inspect(cli, write):
    path = write("laughs.yaml", billion_laughs())
    refused(cli, "inspect", path, mentions=(str(path), "alias"))


def test_billion_laughs_fails_at_loading_under_train(cli, write, tmp_path, monkeypatch):
    pytest.importorskip("torch")  # train imports torch first; keep that out of the timing

    def build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built from a blueprint that should not have loaded")

    monkeypatch.setattr("ganforge.assembly.assemble", build)
    path = write("laughs.yaml", f"extends: {TINY}\n{billion_laughs()}")
    out = tmp_path / "run"
    refused(cli, "train", path, "--out", out, "--device", "cpu", mentions=(str(path), "alias"))
    assert not out.exists()


@pytest.mark.parametrize("text, phrase", [
    pytest.param("a: &a [1, *a]\n", "recursive", id="self-referencing-alias"),
    pytest.param("a: " + "[" * 200 + "]" * 200 + "\n", "nested", id="deep-nesting"),
    pytest.param("a: " + "[" * 600 + "]" * 600 + "\n", "nested", id="nesting-past-the-recursion-limit"),
])
def test_pathological_yaml_shapes(cli, write, text, phrase):
    path = write("shape.yaml", text)
    refused(cli, "inspect", path, mentions=(str(path), phrase))


def test_a_few_aliases_still_load_and_stay_independent(write):
    """Aliases are legal; merging into one aliased mapping must not change its twin."""
    write("base.yaml", "a: &x {k: 1, j: 2}\nb: *x\n")
    child = write("child.yaml", "extends: base.yaml\na: {k: 3}\n")
    doc, origins = load_with_extends(child)
    assert doc == {"a": {"k": 3, "j": 2}, "b": {"k": 1, "j": 2}}
    assert origins["a.k"].endswith("child.yaml") and origins["b.k"].endswith("base.yaml")


# -- special and oversized files ------------------------------------------------------------------

def special_file(kind: str, tmp_path: Path) -> str:
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        fifo = tmp_path / "pipe.yaml"
        os.mkfifo(fifo)
        return str(fifo)
    device = f"/dev/{kind}"
    if not os.path.exists(device):
        pytest.skip(f"no {device} on this platform")
    return device


@pytest.mark.parametrize("via", ["given", "extends"])
@pytest.mark.parametrize("kind", ["zero", "urandom", "fifo"])
def test_special_files_are_never_read(cli, write, tmp_path, kind, via):
    target = special_file(kind, tmp_path)
    if via == "given":
        refused(cli, "inspect", target, mentions=(target, "not a regular file"))
    else:
        child = write("child.yaml", f"extends: {target}\n")
        refused(cli, "inspect", child, mentions=(str(child), "extends", target, "not a regular file"))


@pytest.mark.parametrize("via", ["given", "extends"])
def test_oversized_file_is_refused_before_parsing(cli, write, via):
    big = write("big.yaml", "a: 1\n" + "#" * loading.MAX_FILE_BYTES + "\n")
    if via == "given":
        refused(cli, "inspect", big, mentions=(str(big), "bytes"))
    else:
        child = write("child.yaml", "extends: big.yaml\n")
        refused(cli, "inspect", child, mentions=(str(child), "extends", "big.yaml", "bytes"))


def test_bases_together_stay_under_the_byte_budget(cli, write, monkeypatch):
    monkeypatch.setattr(loading, "MAX_TOTAL_BYTES", 4096)
    names = [f"f{i}.yaml" for i in range(4)]
    for index, name in enumerate(names):
        parent = f"extends: {names[index + 1]}\n" if index + 1 < len(names) else ""
        write(name, f"{parent}k{index}: 1\n# {'x' * 1500}\n")
    refused(cli, "inspect", write("top.yaml", "extends: f0.yaml\n"), mentions=("bytes", "extends"))


def test_repeated_bases_stay_under_the_merge_budget(cli, write, monkeypatch):
    monkeypatch.setattr(loading, "MAX_MERGED_NODES", 2000)
    write("base.yaml", yaml.safe_dump({f"k{i}": {"a": i, "b": [1, 2]} for i in range(50)}))
    child = write("child.yaml", yaml.safe_dump({"extends": ["base.yaml"] * 20}))
    refused(cli, "inspect", child, mentions=(str(child), "extends", "nodes"))


# -- extends chains --------------------------------------------------------------------------------

def test_a_thousand_file_chain_is_refused_by_depth(cli, tmp_path):
    for index in range(1000):
        parent = f"extends: f{index + 1}.yaml\n" if index < 999 else ""
        (tmp_path / f"f{index}.yaml").write_text(f"{parent}k{index}: {index}\n")
    line = refused(cli, "inspect", tmp_path / "f0.yaml", mentions=("extends", "deep"))
    assert str(loading.MAX_EXTENDS_DEPTH) in line


def test_a_chain_at_the_depth_limit_still_loads(tmp_path):
    depth = loading.MAX_EXTENDS_DEPTH
    for index in range(depth + 1):
        parent = f"extends: f{index + 1}.yaml\n" if index < depth else ""
        (tmp_path / f"f{index}.yaml").write_text(f"{parent}k{index}: {index}\nshared: {index}\n")
    doc, _ = load_with_extends(tmp_path / "f0.yaml")
    assert doc["shared"] == 0 and doc[f"k{depth}"] == depth


def write_diamond(folder: Path, levels: int) -> Path:
    """Level ``n`` has files ``l{n}a`` and ``l{n}b``, each extending both files of level ``n - 1``."""
    (folder / "l0a.yaml").write_text("deepest: from-l0a\nwho: l0a\nlevel: 0\n")
    (folder / "l0b.yaml").write_text("who: l0b\nonly_b: true\nlevel: 0\n")
    for level in range(1, levels + 1):
        for side in "ab":
            body = {"extends": [f"l{level - 1}a.yaml", f"l{level - 1}b.yaml"], "level": level,
                    f"side_{side}": level}
            (folder / f"l{level}{side}.yaml").write_text(yaml.safe_dump(body))
    return folder / f"l{levels}a.yaml"


def test_a_14_level_diamond_is_fast_and_merges_base_first(tmp_path):
    top = write_diamond(tmp_path, 14)
    start = time.perf_counter()
    with guard():
        doc, origins = load_with_extends(top)
    assert time.perf_counter() - start < LIMIT
    assert doc["deepest"] == "from-l0a" and origins["deepest"].endswith("l0a.yaml")
    assert doc["who"] == "l0b"  # the later base wins
    assert doc["level"] == 14 and doc["side_a"] == 14 and doc["side_b"] == 13
    assert origins["side_b"].endswith("l13b.yaml")


# -- property: cached DAG loading equals a naive merge ------------------------------------------

def reference_merge(base: dict, override: dict, origins: dict, override_origins: dict, prefix: str = "") -> dict:
    """The merge as first written: copy, recurse into mappings, prefix-scan the origins."""
    out = dict(base)
    for key, value in override.items():
        path = join_path(prefix, key)
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and not (
                "type" in old and "type" in value and old["type"] != value["type"]):
            out[key] = reference_merge(old, value, origins, override_origins, path)
            continue
        out[key] = value
        for stale in [p for p in origins if p == path or p.startswith((path + ".", path + "["))]:
            del origins[stale]
        origins.update({p: f for p, f in override_origins.items()
                        if p == path or p.startswith((path + ".", path + "["))})
    return out


def reference_origins(data: Any, file: str, prefix: str = "") -> dict:
    out = {prefix: file}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(reference_origins(value, file, join_path(prefix, str(key))))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out.update(reference_origins(value, file, join_path(prefix, index)))
    return out


def reference_load(files: dict[str, dict], name: str, folder: Path) -> tuple[dict, dict]:
    """Re-read every base on every path through the DAG (exponential, fine for a handful of files)."""
    body = dict(files[name])
    bases = body.pop("extends", [])
    merged: dict = {}
    origins: dict = {}
    for base in bases:
        base_doc, base_origins = reference_load(files, base, folder)
        merged = reference_merge(merged, base_doc, origins, base_origins)
    return reference_merge(merged, body, origins, reference_origins(body, str(folder / name))), origins


keys = st.sampled_from(list(string.ascii_lowercase[:4]))
leaves = st.one_of(st.integers(0, 3), st.sampled_from(["x", "y"]), st.lists(st.integers(0, 3), max_size=2))
values = st.recursive(leaves, lambda inner: st.dictionaries(keys | st.just("type"), inner, max_size=3),
                      max_leaves=6)
bodies = st.dictionaries(keys, values, min_size=1, max_size=3)


@st.composite
def extends_dags(draw: st.DrawFn) -> dict[str, dict]:
    """Files f0..fn; each may extend any earlier-numbered files, in any order, repeats allowed."""
    count = draw(st.integers(1, 6))
    files: dict[str, dict] = {}
    for index in range(count):
        body = draw(bodies)
        if index:
            body["extends"] = draw(st.lists(st.sampled_from([f"f{i}.yaml" for i in range(index)]), max_size=3))
        files[f"f{index}.yaml"] = body
    return files


@given(extends_dags())
@settings(max_examples=25, deadline=None)
def test_cached_extends_equals_naive_reference(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("dag")
    for name, body in files.items():
        (folder / name).write_text(yaml.safe_dump(body))
    top = sorted(files, key=lambda n: int(n[1:-5]))[-1]
    doc, origins = load_with_extends(folder / top)
    expected_doc, expected_origins = reference_load(files, top, folder)
    assert doc == expected_doc
    assert origins == expected_origins


def test_errors_are_blueprint_errors_for_library_callers(tmp_path):
    """The same limits hold without the CLI: callers get a BlueprintError, never a RecursionError."""
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    with guard(), pytest.raises(BlueprintError) as caught:
        load_with_extends(path)
    assert caught.value.file == str(path)
