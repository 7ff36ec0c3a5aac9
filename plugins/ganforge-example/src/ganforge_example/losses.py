"""Relativistic average hinge loss (RaGAN; Jolicoeur-Martineau 2018, "The relativistic
discriminator: a key element missing from standard GAN")."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F


class RelativisticHinge:
    """Relativistic average hinge loss (RaGAN hinge, Jolicoeur-Martineau 2018); G needs real logits too.

    The critic judges how much more realistic a real sample is than the *average* fake one,
    and vice versa. With ``r`` the real logits, ``f`` the fake logits and ``m`` the margin::

        D loss = E[relu(m - (r - mean f))] + E[relu(m + (f - mean r))]
        G loss = E[relu(m - (f - mean r))] + E[relu(m + (r - mean f))]

    The generator loss is the discriminator loss with the roles of real and fake swapped,
    so, unlike non-relativistic losses, it depends on the real logits as well: the
    generator improves by making fakes look more real *relative to* the reals. That is why
    ``generator_loss`` takes ``real`` and why the class sets ``generator_needs_real = True``:
    the engine also runs the discriminator on a real batch during the generator step and
    passes its output in. ``real`` and ``fake`` are D's outputs (``logit`` of shape (B,));
    means run over all elements, and the real and fake batches may differ in size.

    Settings:
        margin: the hinge margin ``m`` (1.0 in the paper).
    """

    generator_needs_real = True
    """The generator loss needs the discriminator's logits on real data."""

    def __init__(self, *, margin: float = 1.0) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def discriminator_loss(self, *, real: Any, fake: Any) -> torch.Tensor:
        real_logits, fake_logits = real.logit, fake.logit  # records.DiscriminatorOutput, read by field
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        return F.relu(self.margin - real_rel).mean() + F.relu(self.margin + fake_rel).mean()

    def generator_loss(self, *, fake: Any, real: Any) -> torch.Tensor:
        real_logits, fake_logits = real.logit, fake.logit
        fake_rel = fake_logits - real_logits.mean()
        real_rel = real_logits - fake_logits.mean()
        return F.relu(self.margin - fake_rel).mean() + F.relu(self.margin + real_rel).mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(margin={self.margin})"
