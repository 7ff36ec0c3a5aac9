"""One table of kinds (``ganforge.contracts.KIND_TABLE``): every reader agrees with it.

The registry, the plugin loader, the blueprint schema and ``ganforge components`` take the kinds
from the table, so a kind added there shows up everywhere, and no other module keeps its own list
of kind names.
"""

from __future__ import annotations

import ast
import typing
from importlib import metadata
from typing import Any, Protocol

import pytest
from click.testing import CliRunner

import ganforge.registry as registry_module
from ganforge.blueprint.schema import Blueprint, ComponentSpec
from ganforge.cli import cli
from ganforge.contracts import KIND_TABLE, KINDS, NETWORK_KINDS, ContractError, Kind, check_contract, kinds_markdown
from ganforge.plugins import PluginIndex
from ganforge.registry import Registry
from support import ROOT


def test_every_kind_has_a_protocol_and_a_place_in_a_blueprint():
    assert KIND_TABLE and KINDS == tuple(KIND_TABLE)
    for name, kind in KIND_TABLE.items():
        assert isinstance(kind, Kind) and kind.name == name
        assert issubclass(kind.protocol, Protocol) and getattr(kind.protocol, "_is_runtime_protocol", False), name
        assert kind.protocol.__doc__ and kind.protocol.__name__ in kind.interface
        assert kind.blueprint, f"{name}: where does a blueprint name one?"
        if kind.network:
            assert kind.context_params == {"in_channels", "in_features", "in_size", "num_classes"}
        else:  # the generator's latent and context producers are sized by the generator's latent and classes
            assert kind.context_params <= {"latent_dim", "num_classes", "consumers"}, name
        for cap_name, cap in kind.capabilities.items():
            assert cap.name == cap_name and cap.doc
    assert NETWORK_KINDS == ("block", "layer", "head")  # a stack's `type` is looked up as a block first


def test_the_registry_reads_the_table():
    assert registry_module.KINDS is KINDS and registry_module.NETWORK_KINDS is NETWORK_KINDS
    registry = Registry()

    class Thing:
        def __init__(self, *, in_channels: int = 1, size: int = 2) -> None: ...

    for kind in KIND_TABLE:
        component = registry.add(kind, f"thing_{kind}", Thing)
        assert component.context_params == KIND_TABLE[kind].context_params & {"in_channels", "size"}
    assert [c.kind for c in registry.list()] == list(KIND_TABLE)
    with pytest.raises(registry_module.RegistryError, match="kinds are: " + ", ".join(KIND_TABLE)):
        registry.add("gadget", "thing", Thing)


def test_one_keyword_only_check_for_register_add_and_plugins():
    class Positional:
        def __init__(self, channels: int = 3) -> None: ...

    messages = []
    for attempt in (lambda: Registry().add("loss", "p", Positional),
                    lambda: registry_module.register("loss", "p")(Positional),
                    lambda: check_contract("loss", Positional)):
        with pytest.raises(ContractError, match="keyword-only") as info:
            attempt()
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages


def _field_type(model: type, path: str) -> Any:
    annotation: Any = Blueprint
    for part in path.split("."):
        model = _model_in(annotation)
        assert model is not None and part in model.model_fields, f"the blueprint schema has no {path!r}"
        annotation = model.model_fields[part].annotation
    return annotation


def _model_in(annotation: Any) -> type | None:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _component_slots(model: type, prefix: str = "") -> set[str]:
    """Every path of the schema at which a blueprint names a component (``{type: NAME, ...}``)."""
    slots = set()
    for name, info in model.model_fields.items():
        inner = _model_in(info.annotation)
        if inner is None:
            continue
        if issubclass(inner, ComponentSpec):
            slots.add(prefix + name)
        else:
            slots |= _component_slots(inner, f"{prefix}{name}.")
    return slots


def test_the_blueprint_schema_agrees_with_the_table():
    claimed = {slot for kind in KIND_TABLE.values() for slot in kind.blueprint}
    for kind in KIND_TABLE.values():
        for slot in kind.blueprint:
            annotation = _field_type(Blueprint, slot)
            model = _model_in(annotation)
            assert model is ComponentSpec or (model is not None and issubclass(model, ComponentSpec)) \
                or annotation == list[str], (kind.name, slot, annotation)
    assert _component_slots(Blueprint) == {slot for slot in claimed if slot != "train.eval_metrics"}
    assert typing.get_args(_field_type(Blueprint, "train.eval_metrics")) == (str,)
    assert all(KIND_TABLE[k].blueprint == KIND_TABLE["layer"].blueprint for k in NETWORK_KINDS)


class Widget(Protocol):
    def spin(self) -> None: ...


def test_a_kind_added_to_the_table_shows_up_everywhere(monkeypatch):
    checked = []
    widget = Kind("widget", typing.runtime_checkable(Widget), "`Widget`: `spin()`", ("widgets",),
                  check=lambda kind, obj: checked.append((kind, obj)))
    monkeypatch.setitem(KIND_TABLE, "widget", widget)

    class Spinner:
        """Spins (a test component)."""

        def __init__(self, *, speed: int = 3) -> None: ...

        def spin(self) -> None: ...

    check_contract("widget", Spinner)
    assert checked == [("widget", Spinner)]

    eps = [metadata.EntryPoint(name="widget.spinner", value=f"{__name__}:Spinner", group="ganforge.plugins")]
    assert not PluginIndex.from_entry_points(eps).broken  # the plugin loader accepts the new kind
    registry = Registry()
    registry.add("widget", "spinner", Spinner)
    assert [c.name for c in registry.list("widget")] == ["spinner"]
    monkeypatch.setattr(registry_module, "_default", registry)

    runner = CliRunner()
    listing = runner.invoke(cli, ["components", "widget"])
    assert listing.exit_code == 0, listing.output
    assert "widget" in listing.output and "spinner" in listing.output
    for name in ("spinner", "widget.spinner"):
        shown = runner.invoke(cli, ["components", "show", name])
        assert shown.exit_code == 0, shown.output
        assert shown.output.startswith("widget spinner") and "speed: int (default 3)" in shown.output
    assert "| widget | `Widget`: `spin()` | none | none |" in kinds_markdown()


def _kind_name_literals(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Literal tuples, lists, sets and dicts whose two or more elements (keys) are all kind names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        words = [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)]
        if len(items) >= 2 and len(words) == len(items) and set(words) <= KIND_TABLE.keys():
            found.append((node.lineno, words))
    return found


NOT_YET_FROM_THE_TABLE: set[tuple[str, tuple[str, ...]]] = set()


def test_no_module_keeps_its_own_list_of_kind_names():
    offenders = []
    for path in sorted((ROOT / "ganforge").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for line, words in _kind_name_literals(ast.parse(path.read_text(), str(path))):
            if (relative, tuple(words)) not in NOT_YET_FROM_THE_TABLE:
                offenders.append(f"{relative}:{line}: {words}")
    assert not offenders, "kinds are declared once, in ganforge.contracts.KIND_TABLE:\n" + "\n".join(offenders)
    # the scan itself finds such a list
    assert _kind_name_literals(ast.parse("KINDS = ('layer', 'block')\nNET = {'head': 1, 'loss': 2}"))


README_TABLE_MARKER = "<!-- kinds: ganforge.contracts.kinds_markdown() -->"


def test_readme_plugin_rules_show_the_table():
    text = (ROOT / "README.md").read_text()
    if README_TABLE_MARKER not in text:
        pytest.skip("README does not carry the generated table of kinds yet")
    after = text[text.index(README_TABLE_MARKER) + len(README_TABLE_MARKER):].lstrip("\n")
    assert after.startswith(kinds_markdown() + "\n"), "README's table of kinds differs from kinds_markdown()"
