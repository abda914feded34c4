"""meshwarden.identifiers and meshwarden.status_message: what every edge refuses and sends."""

from __future__ import annotations

import pytest

from meshwarden import identifiers
from meshwarden.status_message import MAX_STATUS_MESSAGE_BYTES, fit


@pytest.mark.parametrize("field", sorted(identifiers.LIMITS))
def test_each_identifier_has_a_limit_and_says_it(field: str) -> None:
    limit = identifiers.LIMITS[field]
    assert identifiers.identifier_problem(field, "a" * limit) is None
    assert identifiers.identifier_problem(field, "a" * (limit + 1)) == (
        f"{field} is {limit + 1} characters; at most {limit} are accepted"
    )


@pytest.mark.parametrize("bad", ["s-1\nINFO forged", "tab\there", "esc\x1b[31m", "nul\x00", "ls\u2028"])
def test_control_characters_are_refused_and_shown_escaped(bad: str) -> None:
    problem = identifiers.identifier_problem("session_id", bad)
    assert problem is not None and "control character" in problem
    assert "\n" not in problem and "\x1b" not in problem and "\u2028" not in problem


def test_first_problem_names_the_first_bad_field() -> None:
    assert identifiers.first_problem({"session_id": "ok", "workflow_id": "w" * 500}) == (
        "workflow_id is 500 characters; at most 128 are accepted"
    )
    assert identifiers.first_problem({"session_id": "", "workflow_id": "ünïcode ok"}) is None


def test_a_status_message_is_cut_to_fit_the_metadata_limit() -> None:
    assert fit("short") == "short"
    cut = fit("é" * 10_000)  # two bytes each
    assert len(cut.encode()) <= MAX_STATUS_MESSAGE_BYTES and cut.endswith("(message cut)")
