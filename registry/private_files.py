"""Files only the registry's user may read: the CA key and the operator token.

A secret is written so that it is never, even for an instant, readable by anybody else and
never half-written: a temporary file created with mode 0600 from the start (os.open with a
mode, so the umask cannot widen it), written, fsynced, renamed over the target, and the
directory fsynced so the rename survives a crash. Reading refuses a file that others can
read or write, as ssh does with private keys: a leaked key must be replaced, not used.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Final

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
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # O_CREAT's mode is filtered by the umask too
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
