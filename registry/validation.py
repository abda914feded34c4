"""Checks a registration request field by field, before anything is stored.

Each rule raises InvalidInput naming the field path the sidecar sent ("instance.version",
"instance.capabilities[1].schema_hash"), the rule, and the value, so an operator can fix the
agent's manifest from the message alone. The registry is the one place every sidecar's input
meets, so it refuses anything that would later confuse routing: bad names, bad versions,
duplicate capabilities, schemas that are not JSON.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Final, NoReturn

import semantic_version

from meshwarden.addresses import AddressError, parse_host_port
from meshwarden.names import AGENT_NAME, AGENT_NAME_RULE, CAPABILITY_NAME, CAPABILITY_NAME_RULE
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.model import Capability, InstanceSpec
from meshwarden.schema_hash import schema_hash

INSTANCE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # room for <agent>-<suffix>
SCHEMA_HASH: Final = re.compile(r"sha256:[0-9a-f]{64}")
_SHOWN_CHARS: Final = 80


def validate_spec(spec: InstanceSpec) -> None:
    """Raises InvalidInput for the first field of `spec` that breaks a rule."""
    if spec.instance_id and not INSTANCE_ID.fullmatch(spec.instance_id):
        _refuse("instance.instance_id", f"must be empty or match {INSTANCE_ID.pattern}", spec.instance_id)
    validate_agent_name(spec.agent, "instance.agent")
    _check_version(spec.version)
    _check_peer_address(spec.peer_address)
    if spec.spiffe_id and not spec.spiffe_id.startswith("spiffe://"):
        _refuse("instance.spiffe_id", "must be empty or a spiffe:// URI", spec.spiffe_id)
    first_index: dict[str, int] = {}
    for index, capability in enumerate(spec.capabilities):
        where = f"instance.capabilities[{index}]"
        _check_capability(capability, where)
        if capability.name in first_index:
            raise InvalidInput(
                f"{where}.name",
                f"{capability.name!r} duplicates instance.capabilities[{first_index[capability.name]}]; "
                "each capability may be registered once per instance",
            )
        first_index[capability.name] = index


def validate_agent_name(name: str, field: str) -> None:
    """Also used for the `agent` filter of ListInstances."""
    if not AGENT_NAME.fullmatch(name):
        _refuse(field, f"must be {AGENT_NAME_RULE}", name)


def validate_capability_name(name: str, field: str) -> None:
    """Also used for the `capability` filter of ListInstances."""
    if not CAPABILITY_NAME.fullmatch(name):
        _refuse(field, f"must be {CAPABILITY_NAME_RULE}", name)


def _check_version(version: str) -> None:
    if not _is_semantic_version(version):
        _refuse("instance.version", "must be a semantic version such as 2.3.1", version)


# The instances of one agent register the same versions and schemas again and again (a whole
# fleet after a restart): what passed once is remembered, bounded, so a registration does not
# parse them again. Only pure functions of the texts are cached; a refusal is not.
@functools.lru_cache(maxsize=1024)
def _is_semantic_version(version: str) -> bool:
    try:
        semantic_version.Version(version)
    except ValueError:
        return False
    return True


def _hash_of_schemas(input_text: str, output_text: str) -> str | None:
    """The schema hash of the two schema texts, or None unless both are JSON Schemas; kept
    for schemas up to _CACHED_SCHEMA_CHARS (at most 256 x 16 KiB remembered)."""
    if len(input_text) + len(output_text) > _CACHED_SCHEMA_CHARS:
        return _hash_of_valid_schemas(input_text, output_text)
    return _cached_hash_of_valid_schemas(input_text, output_text)


_CACHED_SCHEMA_CHARS: Final = 16 * 1024


def _hash_of_valid_schemas(input_text: str, output_text: str) -> str | None:
    try:
        return schema_hash(_check_schema("", input_text), _check_schema("", output_text))
    except InvalidInput:
        return None


_cached_hash_of_valid_schemas: Final = functools.lru_cache(maxsize=256)(_hash_of_valid_schemas)


def _check_peer_address(address: str) -> None:
    try:
        parsed = parse_host_port(address, what="peer address")
    except AddressError as exc:
        raise InvalidInput("instance.peer_address", f"is invalid: {exc}") from exc
    if parsed.port == 0:
        _refuse("instance.peer_address", "must name the port the sidecar listens on, not 0", address)


MAX_DEFAULT_TIMEOUT_MS = 3_600_000


def _check_capability(capability: Capability, where: str) -> None:
    validate_capability_name(capability.name, f"{where}.name")
    expected = _hash_of_schemas(capability.input_schema_json, capability.output_schema_json)
    if expected is None:  # says which schema is wrong, and how
        _check_schema(f"{where}.input_schema_json", capability.input_schema_json)
        _check_schema(f"{where}.output_schema_json", capability.output_schema_json)
        raise AssertionError("unreachable: a schema failed to hash but passes its check")
    if not SCHEMA_HASH.fullmatch(capability.schema_hash):
        _refuse(f"{where}.schema_hash", "is required, as sha256:<64 lowercase hex digits>", capability.schema_hash)
    if capability.schema_hash != expected:
        # Sidecars key compiled validators by this hash: a wrong one would lend these schemas
        # to every other capability that has the hash it claims.
        _refuse(f"{where}.schema_hash", f"does not match the schemas, which hash to {expected}", capability.schema_hash)
    if capability.default_timeout_ms > MAX_DEFAULT_TIMEOUT_MS:
        _refuse(
            f"{where}.default_timeout_ms",
            f"must be at most {MAX_DEFAULT_TIMEOUT_MS} (one hour), or 0 for none",
            str(capability.default_timeout_ms),
        )


def _check_schema(field: str, text: str) -> object:
    """The schema `text` holds ({} for empty, "any JSON value"); InvalidInput unless it is one."""
    if not text.strip():
        return {}
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(field, f"is not valid JSON: {exc}") from exc
    if not isinstance(schema, (dict, bool)):
        raise InvalidInput(field, f"must be a JSON Schema (an object or a boolean), got {_json_kind(schema)}")
    return schema


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _refuse(field: str, rule: str, value: str) -> NoReturn:
    shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
    raise InvalidInput(field, f"{rule}, got {shown!r}")
