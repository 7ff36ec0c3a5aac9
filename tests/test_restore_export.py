"""One ``restore`` for checkpoints and exports (``ganforge.engine.restore``): the registry passed in is the one used."""

from __future__ import annotations

import pytest
import torch

from test_build_path import custom, custom_run  # noqa: F401  (fixtures: a registry with toy components, a run on it)


def test_an_export_is_restored_with_the_registry_it_is_given(custom, custom_run, tmp_path):
    """One ``restore`` for checkpoints and exports: an export's blueprint is resolved by the registry passed in."""
    from ganforge.commands.export import export_generator
    from ganforge.engine.restore import RestoredExport, restore
    from ganforge.errors import GanforgeError

    run, out = export_generator(custom_run, tmp_path / "toy.safetensors", registry=custom, warn=lambda message: None)
    assert run.registry is custom
    restored = restore(out, registry=custom)
    assert isinstance(restored, RestoredExport) and restored.registry is custom and restored.step == 2
    ours, theirs = restored.generator.state_dict(), run.generator.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(GanforgeError, match="toy_squares"):  # the global registry does not know its dataset
        restore(out)
