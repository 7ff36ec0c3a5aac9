"""The manifest of a prepared folder, validated whole before any shard is touched.

A hand-edited or damaged manifest (a class list that is a number, a count that is a string, a
shard entry without its labels, a path leading out of the folder) ends in one line naming the
file and the key, never in a ``KeyError`` or ``TypeError`` downstream. Types are strict: JSON's
``"16"`` is not the number 16.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from ...errors import GanforgeError, join_path
from .files import os_reason, read_json
from .prepare import FORMAT, MANIFEST, VERSION

Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[StrictInt, Field(ge=0, le=2**48)]  # bounded: offsets are int64 sums


class ShardEntry(BaseModel):
    """One shard: its two array files (plain names inside the folder), image count, sizes and hashes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    images: StrictStr
    labels: StrictStr
    count: Count
    images_bytes: Count | None = None
    images_sha256: Sha256 | None = None
    labels_bytes: Count | None = None
    labels_sha256: Sha256 | None = None

    @field_validator("images", "labels")
    @classmethod
    def _inside_the_folder(cls, name: str) -> str:
        problem = _path_problem(name)
        if problem:
            raise ValueError(f"{name!r} {problem}: a shard must be a file inside the prepared folder")
        return name

    @property
    def checksummed(self) -> bool:
        return None not in (self.images_bytes, self.images_sha256, self.labels_bytes, self.labels_sha256)


class Manifest(BaseModel):
    """What ``prepared`` reads of ``manifest.json`` (other keys, such as ``skipped``, are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["ganforge-prepared"]
    version: Literal[1]
    resolution: Annotated[StrictInt, Field(ge=1)]
    channels: Annotated[StrictInt, Field(ge=1, le=4)]
    classes: list[StrictStr]
    shards: list[ShardEntry]


def _path_problem(name: str) -> str | None:
    if not name or "\0" in name:
        return "is empty or holds a NUL byte"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "is an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "leads out of the folder (..)"
    return None


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a prepared folder; a clear error when it is missing, unfinished, foreign or malformed."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise GanforgeError(f"data.root {str(folder)!r} is not a directory: run `ganforge prepare DATA_ROOT "
                            f"--resolution R --out {folder}` first")
    if not path.exists():
        raise GanforgeError(f"{path} is missing: the folder was not written by `ganforge prepare`, or that run "
                            "was interrupted (rerun the same command to finish it)")
    try:
        raw = read_json(path)
    except (OSError, ValueError) as err:
        raise GanforgeError(f"{path}: not a readable ganforge manifest ({_reason(err)})") from None
    if isinstance(raw, dict) and raw.get("format") != FORMAT:
        raise GanforgeError(f"{path}: not a ganforge manifest (format is {raw.get('format')!r}, not {FORMAT!r})")
    if isinstance(raw, dict) and raw.get("version") != VERSION:
        raise GanforgeError(f"{path}: version {raw.get('version')!r}; this ganforge reads version {VERSION}: "
                            "rerun `ganforge prepare` into a new folder")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = join_path(*first["loc"]) or "(top level)"
        if first["type"] == "value_error":  # our own check: its message shows the value
            problem = first["msg"].removeprefix("Value error, ")
        elif first["type"] == "missing":
            problem = first["msg"]
        else:
            got = repr(first.get("input"))
            problem = f"{first['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})"
        raise GanforgeError(f"{path}: {key}: {problem}; not a manifest `ganforge prepare` wrote: rerun it") from None


def _reason(err: Exception) -> str:
    return os_reason(err) if isinstance(err, OSError) else " ".join(str(err).split())[:200]
