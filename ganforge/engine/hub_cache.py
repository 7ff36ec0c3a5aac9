"""``hf://ORG/NAME`` targets: an export on the Hugging Face Hub, resolved through ``huggingface_hub``'s cache.

``hf://ORG/NAME[@REVISION][/PATH.safetensors]`` names the file ``PATH`` (default ``model.safetensors``,
the name ``ganforge export --push-to-hub`` uploads as) of model repo ``ORG/NAME`` at ``REVISION``
(a branch, tag or commit; default ``main``). ``hf_hub_download`` finds it in the local cache
(``HF_HUB_CACHE`` / ``HF_HOME``) or downloads it there; with ``HF_HUB_OFFLINE=1`` only the cache is read.
``huggingface_hub`` is imported only when such a target is resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import GanforgeError
from .export_format import SUFFIX

__all__ = ["DEFAULT_FILE", "PREFIX", "HubTarget", "hub_file", "is_hub_target", "parse_hub_target"]

PREFIX = "hf://"
DEFAULT_FILE = "model" + SUFFIX
# The Hub's own rule for a repo name part (huggingface_hub.utils.validate_repo_id checks it again).
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_TARGET = re.compile(rf"(?P<org>{_PART})/(?P<name>{_PART})(?:@(?P<revision>[^/@\s]+))?(?:/(?P<file>\S+))?")


@dataclass(frozen=True)
class HubTarget:
    """One parsed ``hf://`` target: which repo, which file in it, at which revision (None: ``main``)."""

    repo_id: str
    filename: str
    revision: str | None

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        file = "" if self.filename == DEFAULT_FILE else f"/{self.filename}"
        return f"{PREFIX}{self.repo_id}{revision}{file}"


def is_hub_target(target: object) -> bool:
    """Whether ``target`` is an ``hf://`` string (a ``Path`` never is: ``Path("hf://x")`` loses a slash)."""
    return isinstance(target, str) and target.startswith(PREFIX)


def parse_hub_target(text: str) -> HubTarget:
    """``hf://ORG/NAME[@REVISION][/FILE.safetensors]`` as a ``HubTarget``, or one GanforgeError line."""
    match = _TARGET.fullmatch(text[len(PREFIX):]) if is_hub_target(text) else None
    if match is None:
        raise GanforgeError(f"{text}: not a Hub target (expected hf://ORG/NAME, hf://ORG/NAME@REVISION or "
                            f"hf://ORG/NAME/FILE{SUFFIX})")
    filename = match["file"] or DEFAULT_FILE
    if not filename.endswith(SUFFIX) or ".." in filename.split("/"):
        raise GanforgeError(f"{text}: the file in the repo must be a {SUFFIX} export (got {filename!r})")
    return HubTarget(repo_id=f"{match['org']}/{match['name']}", filename=filename, revision=match["revision"])


def hub_file(target: str) -> Path:
    """The local path of ``target``'s file in the Hub cache, downloading it unless ``HF_HUB_OFFLINE`` is set.

    Every failure (offline and not cached, no such repo, revision or file, no network) is one
    GanforgeError line naming the target.
    """
    hub = parse_hub_target(target)
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            LocalEntryNotFoundError, OfflineModeIsEnabled,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:
        raise GanforgeError(f"{target}: loading from the Hub needs huggingface_hub "
                            "(pip install huggingface_hub)") from None
    try:
        return Path(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision, repo_type="model",
                                    library_name="ganforge"))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if constants.HF_HUB_OFFLINE:
            raise GanforgeError(f"{target}: {hub.filename} of {hub.repo_id}"
                                f"{'@' + hub.revision if hub.revision else ''} is not in the local Hugging Face "
                                f"cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set") from None
        raise GanforgeError(f"{target}: cannot reach the Hugging Face Hub, and {hub.filename} is not in the local "
                            f"cache ({constants.HF_HUB_CACHE})") from None
    except GatedRepoError:
        raise GanforgeError(f"{target}: {hub.repo_id} is gated: accept its terms on the Hub and log in "
                            "(hf auth login)") from None
    except RepositoryNotFoundError:
        raise GanforgeError(f"{target}: no model repo {hub.repo_id} on the Hub (or it is private: log in with "
                            "hf auth login)") from None
    except RevisionNotFoundError:
        raise GanforgeError(f"{target}: {hub.repo_id} has no revision {hub.revision!r}") from None
    except EntryNotFoundError:
        raise GanforgeError(f"{target}: {hub.repo_id} has no file {hub.filename}") from None
    except (HfHubHTTPError, OSError) as err:  # network errors, a cache folder that cannot be written
        summary = " ".join(str(err).split())[:200]
        raise GanforgeError(f"{target}: cannot download from the Hugging Face Hub ({type(err).__name__}: "
                            f"{summary})") from None
