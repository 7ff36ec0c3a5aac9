"""Example ganforge plugin: one component of each kind of contract.

* ``layer.coord_conv`` (CoordConv) and ``loss.relativistic_hinge``: a layer, and a loss on the
  earlier logits-only contract (ganforge adapts it, with a one-time deprecation warning);
* ``head.feature_output`` and ``loss.hinge_feature_matching``: a discriminator head with a named
  extra (``outputs``) and a loss that reads it (``needs_outputs``);
* ``regularizer.image_mean``: a regulariser of the generator, asking for what it needs;
* ``controller.logit_tracker`` and ``layer.instance_noise``: feedback after every step, state in
  checkpoints, and a layer that ``requires`` its controller;
* ``context.layer_codes`` and ``layer.film``: a conditioning context through the generator and a
  layer consuming its entry.

The components are registered with ganforge through the ``ganforge.plugins`` entry
points declared in this package's ``pyproject.toml``; nothing here imports ganforge.
"""

from .context import FiLM, LayerCodes
from .features import FeatureOutput, HingeFeatureMatching
from .layers import CoordConv, coordinate_channels
from .losses import RelativisticHinge
from .noise import InstanceNoise, LogitTracker
from .regularizers import ImageMeanPenalty

__all__ = ["CoordConv", "FeatureOutput", "FiLM", "HingeFeatureMatching", "ImageMeanPenalty", "InstanceNoise",
           "LayerCodes", "LogitTracker", "RelativisticHinge", "coordinate_channels"]
__version__ = "0.1.0"
