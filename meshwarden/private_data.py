"""Data directories and SQLite files only their owner can read, also when they already exist.

The registry's database holds receipts with raw arguments, the audit log and join-token
hashes; a sidecar's spool holds receipts too. A directory made by someone else (mkdir with a
0022 umask, a volume mount) or a database an older version created 0644 is tightened here,
saying so, rather than used as it is: the files are ours, so fixing them is safe, and a
refusal would only make the operator type the chmod. SQLite creates the -wal and -shm files
with the database file's mode, so the database is created 0600 before SQLite opens it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
SQLITE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def tighten_dir(path: Path) -> Path:
    """Creates `path` 0700, or makes an existing one 0700 (logging that it did); OSError if it cannot."""
    existed = path.is_dir()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if not existed or mode & 0o077:
        os.chmod(path, DIR_MODE)
        if existed:
            log.warning("%s was mode %04o (others could read it); it is now 0700", path, mode)
    return path


def private_sqlite(db_path: Path) -> None:
    """Creates `db_path` 0600 if it is missing, and makes it and its WAL, shared-memory and
    journal files 0600 if others could read them (logging each fix)."""
    os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for suffix in SQLITE_SUFFIXES:
        file = db_path.with_name(db_path.name + suffix)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(file, FILE_MODE)
            log.warning("%s was mode %04o (others could read it); it is now 0600", file, mode)
