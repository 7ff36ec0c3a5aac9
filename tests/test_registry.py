"""The registry: names, schemas from signatures, collisions, introspection."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
import pytest

from ganforge.errors import CollisionError, RegistryError, UnknownComponentError
from ganforge.registry import Registry, default_registry, register


class Widen:
    """Toy layer: pretend to widen channels."""

    def __init__(self, *, in_channels: int, channels: int = 8, mode: Literal["a", "b"] = "a",
                 rate: Annotated[float, pydantic.Field(gt=0)] = 0.5) -> None:
        self.in_channels, self.channels, self.mode, self.rate = in_channels, channels, mode, rate


class OtherWiden:
    def __init__(self, *, channels: int = 8) -> None:
        self.channels = channels


def fresh() -> Registry:
    registry = Registry()
    registry.add("layer", "widen", Widen)
    return registry


def test_lookup_and_build_with_context():
    registry = fresh()
    component = registry.get("layer", "widen")
    built = component.build({"channels": 4}, {"in_channels": 3, "num_classes": 7})
    assert (built.in_channels, built.channels, built.mode) == (3, 4, "a")
    assert component.context_params == {"in_channels"}


def test_reregistering_same_object_is_noop_and_different_object_collides():
    registry = fresh()
    assert registry.add("layer", "widen", Widen) is registry.get("layer", "widen")
    with pytest.raises(CollisionError) as info:
        registry.add("layer", "widen", OtherWiden, origin="plugin other 1.0")
    message = str(info.value)
    assert "builtin" not in message or "test_registry" in message
    assert "module tests" in message or "test_registry:Widen" in message
    assert "plugin other 1.0" in message and "OtherWiden" in message


def test_same_name_in_different_kinds_is_allowed():
    registry = fresh()
    registry.add("loss", "widen", OtherWiden)
    assert registry.get("loss", "widen").obj is OtherWiden


def test_schema_rejects_unknown_keys_checks_types_and_shows_defaults():
    component = fresh().get("layer", "widen")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        component.validate({"chanels": 4})
    with pytest.raises(pydantic.ValidationError):
        component.validate({"channels": "many"})
    with pytest.raises(pydantic.ValidationError):
        component.validate({"mode": "c"})
    with pytest.raises(pydantic.ValidationError):
        component.validate({"rate": 0})
    params = {p.name: p for p in component.parameters()}
    assert "in_channels" not in params  # context, never a setting
    assert params["channels"].default == 8 and not params["channels"].required
    assert params["mode"].annotation == "Literal['a', 'b']"


def test_positional_parameters_are_refused():
    class Positional:
        def __init__(self, channels: int = 3) -> None: ...

    with pytest.raises(RegistryError, match="keyword-only"):
        Registry().add("layer", "positional", Positional)
    with pytest.raises(RegistryError, match="keyword-only"):
        register("layer", "positional")(Positional)


@pytest.mark.parametrize("name", ["Widen", "widen-2", "2widen", "a.b", ""])
def test_names_are_plain_lowercase_identifiers(name):
    with pytest.raises(RegistryError, match="invalid component name"):
        Registry().add("layer", name, Widen)


def test_unknown_kind_and_unknown_name_suggest():
    registry = fresh()
    with pytest.raises(RegistryError, match="unknown component kind"):
        registry.get("layers", "widen")
    with pytest.raises(UnknownComponentError) as info:
        registry.get("layer", "widn")
    assert info.value.suggestions == ["widen"]
    assert "did you mean 'widen'" in str(info.value)


def test_list_by_kind_and_glob():
    registry = fresh()
    registry.add("layer", "wide_other", OtherWiden)
    registry.add("loss", "whatever", OtherWiden)
    assert [c.name for c in registry.list("layer", "wid*")] == ["wide_other", "widen"]
    assert [c.name for c in registry.list("layer", "*en")] == ["widen"]
    assert [c.kind for c in registry.list(None, "w*")] == ["layer", "layer", "loss"]


def test_introspection_shows_doc_and_origin():
    component = fresh().get("layer", "widen")
    assert component.summary == "Toy layer: pretend to widen channels."
    assert component.origin.startswith("module ")
    builtin = default_registry().get("update_rule", "ttur")
    assert builtin.origin == "builtin"
    assert {p.name: p.default for p in builtin.parameters()}["d_lr"] == 4e-4


def test_builtin_kinds_are_populated():
    registry = default_registry()
    for kind, name in [("layer", "snconv"), ("layer", "self_attention"), ("block", "up_resblock"),
                       ("block", "down_resblock"), ("loss", "hinge"), ("loss", "non_saturating"),
                       ("update_rule", "ttur"), ("update_rule", "n_critic"), ("optimizer", "adam"),
                       ("dataset", "procedural"), ("init", "orthogonal")]:
        assert registry.get(kind, name).origin == "builtin"
