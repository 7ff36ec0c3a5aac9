"""Every blueprint problem: exit code 2, one message naming the file and the key, no traceback."""

from __future__ import annotations

import pytest

from support import TINY



def check_error(result, *, file: str, path: str | None, phrase: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    first = err.splitlines()[0]
    assert first.startswith("error: ")
    assert file in first, first
    if path is not None:
        assert f": {path}:" in first, first
    assert phrase in first, first
    assert result.stdout == ""
    return first


def extend(write, body: str, name: str = "bad.yaml"):
    return write(name, f"extends: {TINY}\n{body}")


def test_missing_file(cli, tmp_path):
    path = tmp_path / "nope.yaml"
    check_error(cli("inspect", path), file=str(path), path=None, phrase="file not found")


def test_yaml_syntax_error(cli, write):
    path = write("bad.yaml", "generator: {blocks: [\n")
    check_error(cli("inspect", path), file=str(path), path=None, phrase="YAML syntax error at line")


def test_empty_file(cli, write):
    path = write("empty.yaml", "# nothing but a comment\n")
    check_error(cli("inspect", path), file=str(path), path=None, phrase="empty")


def test_wrong_top_level_type(cli, write):
    path = write("list.yaml", "- generator\n- discriminator\n")
    check_error(cli("inspect", path), file=str(path), path=None, phrase="must be a mapping")


def test_unknown_section(cli, write):
    path = extend(write, "trainer: {steps: 3}\n")
    check_error(cli("inspect", path), file=str(path), path="trainer", phrase="unknown key")


def test_unknown_key_in_section(cli, write):
    path = extend(write, "train: {batch_sise: 3}\n")
    check_error(cli("inspect", path), file=str(path), path="train.batch_sise", phrase="unknown key")


BLOCKS = "generator:\n  blocks:\n    - {type: up_resblock, channels: 64}\n    - %s\n"


def test_unknown_component_setting(cli, write):
    path = extend(write, BLOCKS % "{type: up_resblock, chanels: 32}")
    check_error(cli("inspect", path), file=str(path), path="generator.blocks[1].chanels", phrase="unknown key")


def test_unknown_component_suggests_closest(cli, write):
    path = extend(write, BLOCKS % "{type: up_resblok, channels: 32}")
    first = check_error(cli("inspect", path), file=str(path), path="generator.blocks[1].type",
                        phrase="unknown component 'up_resblok'")
    assert "did you mean 'up_resblock'" in first


def test_wrong_type(cli, write):
    path = extend(write, "train: {batch_size: lots}\n")
    check_error(cli("inspect", path), file=str(path), path="train.batch_size", phrase="valid integer")


def test_out_of_range(cli, write):
    path = extend(write, "update_rule:\n  - {type: ttur, g_lr: -1.0}\n")
    check_error(cli("inspect", path), file=str(path), path="update_rule[0].g_lr", phrase="greater than 0")


def test_key_inherited_from_base_names_the_base_file(cli, write):
    base = extend(write, BLOCKS % "{type: up_resblock, channels: -3}", name="base.yaml")
    child = write("child.yaml", "extends: base.yaml\nname: child\n")
    check_error(cli("inspect", child), file=str(base), path="generator.blocks[1].channels",
                phrase="greater than or equal to 1")


def test_channel_mismatch(cli, write):
    path = extend(write, "generator:\n  head: {type: image_output, channels: 1}\n")
    check_error(cli("inspect", path), file=str(path), path="generator.head.channels",
                phrase="produces 1×16×16 images but the data is 3×16×16")


def test_attention_at_resolution_that_never_occurs(cli, write):
    path = extend(write, "generator:\n  attention:\n    - {resolution: 12}\n")
    first = check_error(cli("inspect", path), file=str(path), path="generator.attention[0].resolution",
                        phrase="outputs 12×12")
    assert "4×4, 8×8, 16×16" in first


def test_image_size_not_reachable(cli, write):
    path = extend(write, "data: {resolution: 64}\n")
    check_error(cli("inspect", path), file=str(path), path="generator.blocks",
                phrase="produces 3×16×16 images but the data is 3×64×64")


def test_component_refuses_impossible_shape(cli, write):
    # The discriminator's last block outputs 64 channels at 4×4; a vector-only layer cannot follow.
    path = extend(write, "discriminator:\n  head: {type: snlinear}\n")
    check_error(cli("inspect", path), file=str(path), path="discriminator.head.type", phrase="takes a vector")


def test_extends_cycle(cli, write):
    a = write("a.yaml", "extends: b.yaml\n")
    write("b.yaml", "extends: a.yaml\n")
    check_error(cli("inspect", a), file="a.yaml", path="extends", phrase="cycle")


def test_extends_missing_base(cli, write):
    path = write("child.yaml", "extends: nowhere.yaml\n")
    check_error(cli("inspect", path), file=str(path), path="extends", phrase="not found")


@pytest.mark.parametrize("override, path, phrase", [
    ("train.batch_size", None, "expected KEY=VALUE"),
    ("train.batch_size=[1, 2", "train.batch_size", "bad --set value"),
    ("generator.blocks.9.channels=3", "generator.blocks[9]", "no list item 9"),
    ("train.batch_size=0", "train.batch_size", "greater than or equal to 1"),
    ("train..x=1", None, "bad --set key"),
])
def test_bad_set(cli, override, path, phrase):
    check_error(cli("inspect", TINY, "--set", override), file="--set", path=path, phrase=phrase)


def test_set_creating_an_unknown_section_names_set(cli):
    check_error(cli("inspect", TINY, "--set", "foo.bar=1"), file="--set", path="foo", phrase="unknown key")


def test_set_error_in_component_setting_names_set(cli):
    result = cli("inspect", TINY, "--set", "generator.blocks.1.channels=-2")
    check_error(result, file="--set", path="generator.blocks[1].channels", phrase="greater than or equal to 1")


def test_debug_shows_traceback(cli, write):
    path = extend(write, "train: {batch_sise: 3}\n")
    from ganforge.errors import BlueprintError

    with pytest.raises(BlueprintError):
        cli("inspect", path, "--debug")


def test_errors_come_before_any_model_is_built(cli, write, monkeypatch):
    import ganforge.assembly as assembly

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(assembly.NetworkPlan, "build", forbidden)
    path = extend(write, "loss: {type: hinje}\n")
    check_error(cli("inspect", path), file=str(path), path="loss.type", phrase="did you mean 'hinge'")
