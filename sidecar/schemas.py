"""JSON Schema contracts of capabilities: hashing, compiling once, validating payloads.

A schema is compiled the first time its hash is seen and reused for every later call;
the cache is bounded by the number of distinct schemas in the catalog, capped for safety.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from meshwarden import strict_json
from meshwarden.errors import BadPayload
from meshwarden.status_message import fit

_VALIDATOR = jsonschema.Draft202012Validator
_MAX_CACHED = 1024


class InvalidSchema(ValueError):
    """A capability declared a schema that is not valid JSON Schema."""


def canonical_schema(schema_json: str, *, where: str) -> object:
    """Parses and checks a schema; empty text means "any JSON value" ({})."""
    if not schema_json.strip():
        return {}
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise InvalidSchema(f"{where} is not valid JSON: {exc}") from exc
    try:
        _VALIDATOR.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(f"{where} is not a valid JSON Schema: {exc.message}") from exc
    return schema


def schema_hash(input_schema: object, output_schema: object) -> str:
    """sha256 over the canonical JSON of both schemas: equal contracts hash equal, whatever
    the key order or white space they were written with."""
    canonical = json.dumps(
        {"input": input_schema, "output": output_schema}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_payload(payload: bytes, capability: str, what: str = "arguments") -> object:
    try:
        return strict_json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise not_json(exc, capability, what) from exc


def not_json(problem: ValueError, capability: str, what: str = "arguments") -> BadPayload:
    """The refusal of a payload strict_json.loads refused with `problem`."""
    return BadPayload(fit(f"{what} for {capability} are not valid UTF-8 JSON: {problem}"))


class SchemaCache:
    """Compiled validators by (schema hash, direction)."""

    def __init__(self) -> None:
        self._validators: OrderedDict[tuple[str, str], Validator | None] = OrderedDict()

    def validator(self, key: tuple[str, str], schema_json: str) -> Validator | None:
        """The compiled validator, or None for an empty ("any value") schema."""
        found = self._validators.get(key)
        if found is not None or key in self._validators:
            self._validators.move_to_end(key)
            return found
        schema = canonical_schema(schema_json, where=f"schema {key[0]} ({key[1]})")
        compiled: Validator | None = _VALIDATOR(schema) if schema != {} else None
        self._validators[key] = compiled
        if len(self._validators) > _MAX_CACHED:
            self._validators.popitem(last=False)
        return compiled


def check(validator: Validator | None, value: object, capability: str, what: str) -> None:
    """Raises BadPayload naming the offending field and the rule it breaks."""
    if validator is None:
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise BadPayload(f"invalid {what} for {capability}: at {error.json_path}: {error.message}")
