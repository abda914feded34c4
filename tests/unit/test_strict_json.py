"""meshwarden.strict_json, and the text log format: what comes from outside stays contained."""

from __future__ import annotations

import logging

import pytest

from meshwarden import strict_json
from meshwarden.logs import TextFormatter


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b'{"a": NaN}', "NaN is not JSON"),
        (b"[Infinity]", "Infinity is not JSON"),
        (b"-Infinity", "-Infinity is not JSON"),
        (b'{"x": 1e400}', "too large"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
        (b'{"a": "\xff"}', "utf-8"),
    ],
)
def test_what_is_not_json_is_a_value_error_saying_why(text: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        strict_json.loads(text)


def test_json_as_it_is_sent_parses() -> None:
    assert strict_json.loads(b'{"amount": 50, "rate": 0.5, "tags": ["a"]}') == {
        "amount": 50,
        "rate": 0.5,
        "tags": ["a"],
    }
    assert strict_json.loads(b"[" * 64 + b"]" * 64) is not None
    wide = b"[" + b",".join(b"[1]" for _ in range(1000)) + b"]"  # many brackets, shallow
    assert len(strict_json.loads(wide)) == 1000  # type: ignore[arg-type]


def test_a_newline_from_outside_never_starts_a_log_line() -> None:
    record = logging.LogRecord("t", logging.INFO, "", 0, "session %s done", ("s-1\nINFO forged",), None)
    line = TextFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line and "s-1\\nINFO forged" in line
