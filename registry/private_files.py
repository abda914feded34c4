"""Files only the registry's user may read: the CA key and the operator token.

Writing goes through meshwarden.secure_files (a temporary file created 0600, fsync, rename,
fsync the directory: never half-written, never readable by others). What this module adds is
the registry's stricter stance on reading: a private file or directory that others can read
or write is refused, as ssh does with private keys (a leaked key must be replaced, not used),
and every failure is a PrivateFileError naming the path and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from meshwarden.secure_files import write_atomically

PRIVATE_FILE_MODE: Final = 0o600
PRIVATE_DIR_MODE: Final = 0o700


class PrivateFileError(Exception):
    """A private file or directory cannot be used; the message names the path and the fix."""


def make_private_dir(path: Path) -> None:
    """Creates `path` (and parents) with mode 0700; refuses an existing one others can enter."""
    existed = path.is_dir()
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if not existed:
            os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask; be explicit
    except OSError as exc:
        raise PrivateFileError(f"cannot create {path}: {exc.strerror}") from exc
    _refuse_if_shared(path, "directory", "chmod 700")


def write_private(path: Path, data: bytes) -> None:
    """Atomically replaces `path` with `data`, mode 0600 from the first byte on."""
    try:
        write_atomically(path, data, mode=PRIVATE_FILE_MODE)
    except OSError as exc:
        raise PrivateFileError(f"cannot write {path}: {exc.strerror}") from exc


def read_private(path: Path) -> bytes:
    """The content of `path`; refuses it when group or others may read or write it."""
    _refuse_if_shared(path, "file", "chmod 600")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PrivateFileError(f"cannot read {path}: {exc.strerror}") from exc


def _refuse_if_shared(path: Path, what: str, fix: str) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise PrivateFileError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise PrivateFileError(
            f"{path} is a private {what} but has mode {mode:04o} (others may use it); "
            f"run `{fix} {path}` and, if others could read it, replace what it holds"
        )
