"""registry.private_files: secrets are 0600 from the first byte, replaced atomically, and a
file others can read is refused."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshwarden.registry.private_files import PrivateFileError, make_private_dir, read_private, write_private


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)  # the worst case: nothing filtered out of the modes asked for
    yield
    os.umask(previous)


def test_written_files_are_0600_even_with_an_open_umask(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "secret"
    write_private(path, b"one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_private(path, b"two")
    assert read_private(path) == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temporary file left


def test_private_dirs_are_0700_and_shared_ones_refused(tmp_path: Path, open_umask: None) -> None:
    make_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    with pytest.raises(PrivateFileError, match="mode 0755.*chmod 700"):
        make_private_dir(shared)


def test_reading_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private(path, b"x")
    path.chmod(0o640)
    with pytest.raises(PrivateFileError, match=r"mode 0640.*chmod 600"):
        read_private(path)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(PrivateFileError, match="cannot write"):
        write_private(tmp_path / "missing-dir" / "secret", b"x")
    assert list(tmp_path.iterdir()) == []
