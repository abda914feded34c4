"""A command whose optional dependencies are not installed says which extra to install.

`pip install meshwarden` brings the SDK and the operator commands; the servers' dependencies
come with extras (pyproject.toml). A command that needs one runs its imports inside
`needs_extra`, so a missing package becomes one line naming the extra instead of a trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class MissingExtra(Exception):
    """`command` needs `meshwarden[extra]`, and `module` (one of its packages) is missing."""

    def __init__(self, command: str, extra: str, module: str) -> None:
        super().__init__(
            f"`meshwarden {command}` needs the {extra} extra (module {module} is not installed): "
            f"pip install 'meshwarden[{extra}]'"
        )
        self.command, self.extra, self.module = command, extra, module


@contextmanager
def needs_extra(extra: str | None, command: str) -> Iterator[None]:
    """Turn a missing third-party module into MissingExtra; a missing meshwarden module is a bug."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if extra is None or not missing or missing.split(".")[0] == "meshwarden":
            raise
        raise MissingExtra(command, extra, missing) from exc
