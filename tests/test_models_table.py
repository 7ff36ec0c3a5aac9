"""README's Models table states each family's parameter counts: they are the blueprints' own."""

from __future__ import annotations

import re

import pytest

from support import BLUEPRINTS, ROOT

ROW = re.compile(r"^\| [^|]+ \| `(?P<blueprint>[\w.]+\.yaml)` \| [^|]+ \| (?P<g>[\d,]+) / (?P<d>[\d,]+) \|", re.M)


def rows() -> list[tuple[str, int, int]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Models\n"):text.index("## Blueprints\n")]
    return [(m["blueprint"], int(m["g"].replace(",", "")), int(m["d"].replace(",", ""))) for m in ROW.finditer(section)]


def test_the_table_lists_every_family_blueprint():
    listed = {name for name, _, _ in rows()}
    families = {p.name for p in BLUEPRINTS.glob("*.yaml")} - {
        "tiny.yaml", "long_range32.yaml", "long_range32_covering.yaml", "dcgan_baseline.yaml",
        "sagan_faces128.yaml", "sagan_imagenet128.yaml", "sagan_imagenet128_feat64.yaml",
        "sagan_imagenet128_no_attention.yaml", "sngan_projection_imagenet128.yaml"}
    assert families <= listed, sorted(families - listed)


@pytest.mark.parametrize("name,g,d", rows())
def test_the_stated_counts_are_the_blueprints(name, g, d):
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint

    assembly = assemble(load_blueprint(BLUEPRINTS / name))
    assert (assembly.generator.params, assembly.discriminator.params) == (g, d)
