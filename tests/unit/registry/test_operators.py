"""registry.operators: the operator token file, its comparison, and that it is never shown."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from meshwarden.registry.errors import StoreError
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE, OperatorCredential, bearer_token


def test_made_once_private_and_reloaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = OperatorCredential.load_or_create(tmp_path)
    path = tmp_path / OPERATOR_TOKEN_FILE
    token = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = OperatorCredential.load_or_create(tmp_path)
    assert first.accepts(token) and again.accepts(token)
    assert not again.accepts(token[:-1]) and not again.accepts("")
    assert token not in caplog.text and str(path) in caplog.text
    assert token not in repr(again)


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    OperatorCredential.load_or_create(tmp_path)
    (tmp_path / OPERATOR_TOKEN_FILE).chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        OperatorCredential.load_or_create(tmp_path)


def test_bearer_token_reads_the_authorization_header() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("x", "y"), ("authorization", b"Bearer abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) == ""
    assert bearer_token(None) == ""
