"""What the stages learn from a call's payload bytes, each worked out at most once per call.

Several stages read the same payload: the schema check parses it as JSON, the tool check and
the policy stage parse it for Cedar, the receipt, the approval and the tool check take its
SHA-256. At 1 MiB one parse costs about 5 ms and one digest about 2 ms here, so each is done
once, on first use, and kept (a failure too, so every stage refuses with the same error).

One `PayloadFacts` is shared by every `replace` of a Call (as its CallRecord is). It answers
for the bytes it was first asked about; asked about other bytes (a stage replaced the
payload), it starts afresh, so a fact never outlives the payload it was computed from.
"""

from __future__ import annotations

from typing import Final

from meshwarden import strict_json
from meshwarden.receipt_hash import payload_digest
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable, parse_arguments

_UNSET: Final = object()


class PayloadFacts:
    __slots__ = ("_of", "_sha256", "_json", "_json_error", "_cedar", "_cedar_error")
    _of: bytes
    _sha256: str | None
    _json: object
    _json_error: ValueError | None
    _cedar: dict[str, object] | None
    _cedar_error: ArgumentsNotMappable | None

    def __init__(self) -> None:
        self._forget(b"")

    def sha256(self, payload: bytes) -> str:
        """The payload's digest as "sha256:<hex>" (meshwarden.receipt_hash.payload_digest)."""
        self._about(payload)
        if self._sha256 is None:
            self._sha256 = payload_digest(payload)
        return self._sha256

    def json(self, payload: bytes) -> object:
        """The payload as strict JSON (meshwarden.strict_json.loads): its value, or the same
        ValueError on every ask. The value is shared: readers must not change it."""
        self._about(payload)
        if self._json is _UNSET and self._json_error is None:
            try:
                self._json = strict_json.loads(payload)
            except ValueError as exc:  # UnicodeDecodeError is one
                self._json_error = exc
        if self._json_error is not None:
            raise self._json_error
        return self._json

    def cedar_arguments(self, payload: bytes) -> dict[str, object]:
        """The payload as the arguments object Cedar's mapping reads (cedar_values.parse_arguments):
        its value, or the same ArgumentsNotMappable on every ask. Shared: readers must not change it."""
        self._about(payload)
        if self._cedar is None and self._cedar_error is None:
            try:
                self._cedar = parse_arguments(payload)
            except ArgumentsNotMappable as exc:
                self._cedar_error = exc
        if self._cedar_error is not None:
            raise self._cedar_error
        assert self._cedar is not None
        return self._cedar

    def _about(self, payload: bytes) -> None:
        if payload is not self._of:
            self._forget(payload)

    def _forget(self, payload: bytes) -> None:
        self._of = payload
        self._sha256 = None
        self._json = _UNSET
        self._json_error = None
        self._cedar = None
        self._cedar_error = None
