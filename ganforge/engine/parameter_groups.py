"""Parameters by name and tag: what optimisers and regularisers receive.

A module tags every parameter inside it with its ``parameter_tags`` capability (BigGAN's shared
embedding: ``no_orthogonal``; StyleGAN's mapping network: ``mapping``); the blueprint's
``optimizers.<network>.groups`` gives a tag's group its own settings (``lr_multiplier``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from torch import nn

from ..assembly import tagged_parameters
from ..records import TaggedParameter

if TYPE_CHECKING:
    from ..blueprint.schema import GroupSpec


def parameter_groups(network: nn.Module, groups: Mapping[str, "GroupSpec"]) -> Iterable[Any]:
    """What the optimiser is built with: all parameters, or one group per configured tag plus the rest.

    Each group carries ``param_names`` (the parameters' names) and ``lr_multiplier``; a parameter
    with two configured tags is refused rather than put in one group silently. Without configured
    groups the optimiser gets ``network.parameters()``, exactly as before groups existed.
    """
    if not groups:
        return network.parameters()
    by_group: dict[str | None, list[TaggedParameter]] = {None: []}
    for tagged in tagged_parameters(network):
        matching = [tag for tag in groups if tag in tagged.tags]
        if len(matching) > 1:
            raise ValueError(f"parameter {tagged.name} carries the tags {', '.join(matching)}, each with its own "
                             "optimizer group; give settings to one of them")
        by_group.setdefault(matching[0] if matching else None, []).append(tagged)
    missing = [tag for tag in groups if tag not in by_group]
    if missing:
        raise ValueError(f"no parameter carries the tag {missing[0]!r} (optimizer groups name tags that the "
                         "network's components set with parameter_tags)")
    out = []
    for tag, members in by_group.items():
        if not members:
            continue
        multiplier = 1.0 if tag is None else groups[tag].lr_multiplier
        out.append({"params": [t.parameter for t in members], "param_names": [t.name for t in members],
                    "group": tag or "", "lr_multiplier": multiplier})
    return out


def apply_multipliers(optimizer: Any) -> None:
    """Scale each tagged group's learning rate by its multiplier once, after the optimiser is built."""
    for group in optimizer.param_groups:
        if group.get("lr_multiplier", 1.0) != 1.0 and "lr" in group:
            group["lr"] = group["lr"] * group["lr_multiplier"]
