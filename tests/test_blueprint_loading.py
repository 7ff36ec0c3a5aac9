"""Loading, extends-merging and --set overrides, with hypothesis properties."""

from __future__ import annotations

import copy

import yaml
from hypothesis import given, settings, strategies as st

from ganforge.blueprint.loading import deep_merge, load_with_extends, read_yaml
from ganforge.blueprint.overrides import apply_overrides, parse_override
from ganforge.blueprint.validation import load_blueprint
from support import BLUEPRINTS, TINY

keys = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.booleans(), st.text(alphabet="abcxyz_ ", min_size=1, max_size=8), st.none())
trees = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=3),
                                                        st.dictionaries(keys, children, max_size=4)), max_leaves=12)
documents = st.dictionaries(keys, trees, min_size=1, max_size=5)


@given(documents)
@settings(max_examples=60, deadline=None)
def test_yaml_round_trip_through_safe_loader(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("rt") / "doc.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert read_yaml(path) == doc


@given(documents)
def test_merge_with_empty_is_identity(doc):
    assert deep_merge(doc, {}) == doc
    assert deep_merge({}, doc) == doc


@given(documents, documents)
def test_override_wins_and_base_keys_survive(base, override):
    before = copy.deepcopy((base, override))
    merged = deep_merge(base, override)
    assert (base, override) == before  # inputs untouched
    for key, value in override.items():
        if not (isinstance(value, dict) and isinstance(base.get(key), dict)):
            assert merged[key] == value
    for key in base:
        assert key in merged


@given(st.lists(documents, min_size=1, max_size=4))
@settings(max_examples=40)
def test_extends_chain_equals_left_fold(tmp_path_factory, chain):
    folder = tmp_path_factory.mktemp("chain")
    expected: dict = {}
    for index, doc in enumerate(chain):
        doc = {k: v for k, v in doc.items() if k != "extends"}
        body = dict(doc)
        if index:
            body["extends"] = f"f{index - 1}.yaml"
        (folder / f"f{index}.yaml").write_text(yaml.safe_dump(body))
        expected = deep_merge(expected, doc)
    loaded, _ = load_with_extends(folder / f"f{len(chain) - 1}.yaml")
    assert loaded == expected


@given(documents)
def test_merging_twice_is_idempotent(doc):
    assert deep_merge(doc, doc) == doc


def test_changing_a_component_type_replaces_its_settings():
    base = {"data": {"type": "imagefolder", "root": None, "flip": True, "resolution": 128}}
    assert deep_merge(base, {"data": {"type": "procedural", "resolution": 16}}) == {
        "data": {"type": "procedural", "resolution": 16}}
    assert deep_merge(base, {"data": {"type": "imagefolder", "resolution": 64}})["data"]["flip"] is True


def test_lists_are_replaced_not_concatenated():
    assert deep_merge({"a": [1, 2, 3]}, {"a": [9]}) == {"a": [9]}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_extends_chain_merges_base_first(write):
    write("base.yaml", "a: {x: 1, y: 2}\nlist: [1, 2]\n")
    write("mid.yaml", "extends: base.yaml\na: {y: 3}\n")
    child = write("child.yaml", "extends: mid.yaml\nlist: [7]\nb: 1\n")
    doc, origins = load_with_extends(child)
    assert doc == {"a": {"x": 1, "y": 3}, "list": [7], "b": 1}
    assert origins["a.x"].endswith("base.yaml") and origins["a.y"].endswith("mid.yaml")
    assert origins["list"].endswith("child.yaml")


set_values = st.one_of(st.integers(-1000, 1000), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False, width=32),
                       st.lists(st.integers(0, 9), max_size=3), st.from_regex(r"[a-z]{1,6}", fullmatch=True))


@given(st.lists(keys, min_size=1, max_size=4), set_values)
def test_set_then_read_back(path, value):
    text = f"{'.'.join(path)}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
    parts, parsed = parse_override(text)
    assert parts == path and parsed == value
    doc = apply_overrides({"keep": 1}, [text])
    node = doc
    for part in path:
        node = node[part]
    assert node == value
    if path[0] != "keep":
        assert doc["keep"] == 1


@given(st.integers(0, 4), st.integers(1, 4096))
def test_set_list_index(index, channels):
    doc = {"generator": {"blocks": [{"channels": 1} for _ in range(5)]}}
    out = apply_overrides(doc, [f"generator.blocks.{index}.channels={channels}"])
    assert out["generator"]["blocks"][index]["channels"] == channels
    assert doc["generator"]["blocks"][index]["channels"] == 1


@given(st.integers(1, 512))
@settings(max_examples=15, deadline=None)
def test_set_is_validated_like_the_file(batch):
    loaded = load_blueprint(TINY, [f"train.batch_size={batch}", "generator.blocks.1.channels=48"])
    assert loaded.blueprint.train.batch_size == batch
    assert loaded.blueprint.generator.blocks[1].settings["channels"] == 48
    assert loaded.origins["train.batch_size"] == "--set"


def test_every_shipped_blueprint_loads():
    names = sorted(p.name for p in BLUEPRINTS.glob("*.yaml"))
    assert {"sagan_imagenet128.yaml", "sngan_projection_imagenet128.yaml", "sagan_cifar10.yaml",
            "dcgan_baseline.yaml", "tiny.yaml"} <= set(names)
    for name in names:
        load_blueprint(BLUEPRINTS / name)


def test_yaml_tags_cannot_construct_objects(write, cli):
    path = write("evil.yaml", "name: !!python/object/apply:os.system ['echo hacked']\n")
    result = cli("inspect", path)
    assert result.exit_code == 2 and "hacked" not in result.stdout
    assert "YAML syntax error" in result.stderr
