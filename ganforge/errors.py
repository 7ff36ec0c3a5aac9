"""Errors a user can act on. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class GanforgeError(Exception):
    """Base for errors caused by input (blueprints, plugins, files), not by bugs."""


class BlueprintError(GanforgeError):
    """A problem in a blueprint, located by file and dotted key path."""

    def __init__(self, message: str, *, path: str = "", file: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.file = file

    def located(self, *, file: str | None = None, prefix: str = "") -> "BlueprintError":
        """Return a copy placed under ``prefix`` and attributed to ``file`` when not yet known."""
        path = join_path(prefix, self.path) if prefix else self.path
        err = BlueprintError(self.message, path=path, file=self.file or file)
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class RegistryError(GanforgeError):
    """Unknown component names, collisions, broken plugins."""


class UnknownComponentError(RegistryError):
    def __init__(self, message: str, *, kind: str, name: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.suggestions = suggestions


class CollisionError(RegistryError):
    pass


def join_path(*parts: str | int) -> str:
    """Join key parts into ``a.b[3].c``: integers become list indices."""
    out = ""
    for part in parts:
        if part == "" or part is None:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and not str(part).startswith("["):
            out += f".{part}"
        else:
            out += str(part)
    return out
