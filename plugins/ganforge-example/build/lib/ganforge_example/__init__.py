"""Example ganforge plugin: a CoordConv layer and a relativistic average hinge loss.

The components are registered with ganforge through the ``ganforge.plugins`` entry
points declared in this package's ``pyproject.toml``; nothing here imports ganforge.
"""

from .layers import CoordConv, coordinate_channels
from .losses import RelativisticHinge

__all__ = ["CoordConv", "RelativisticHinge", "coordinate_channels"]
__version__ = "0.1.0"
