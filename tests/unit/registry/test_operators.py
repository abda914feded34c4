"""registry.operators: the operator token file, its comparison, and that it is never shown."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from meshwarden.registry.errors import StoreError
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE, VIEWER_TOKEN_FILE, OperatorCredential, bearer_token


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


def test_the_viewer_token_is_another_file_and_another_role(tmp_path: Path) -> None:
    operator = OperatorCredential.load_or_create(tmp_path)
    viewer = OperatorCredential.load_or_create_viewer(tmp_path)
    token = (tmp_path / VIEWER_TOKEN_FILE).read_text().strip()
    assert token.startswith("mwv1.") and stat.S_IMODE((tmp_path / VIEWER_TOKEN_FILE).stat().st_mode) == 0o600
    assert viewer.accepts(token) and not operator.accepts(token)
    assert (operator.role, viewer.role) == ("operator", "viewer")
    assert viewer.identity.startswith("viewer:sha256:") and operator.identity.startswith("operator:sha256:")
    assert OperatorCredential.load_or_create_viewer(tmp_path).accepts(token)
    (tmp_path / VIEWER_TOKEN_FILE).write_text("mwo1.not-a-viewer-token\n")
    with pytest.raises(StoreError, match="does not hold a viewer token"):
        OperatorCredential.load_or_create_viewer(tmp_path)
