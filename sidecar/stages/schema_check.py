"""Validate the arguments against the input schema of the capability the call will reach.

Runs on both sides: the caller's sidecar so that a bad call never leaves, the callee's so
that an agent never receives arguments that break its own contract, whoever sent them.
"""

from __future__ import annotations

from meshwarden.errors import BadPayload
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.schemas import InvalidSchema, SchemaCache, check, not_json


class SchemaCheck:
    def __init__(self, next: Handler, schemas: SchemaCache) -> None:
        self._next, self._schemas = next, schemas

    async def __call__(self, call: Call) -> Reply:
        if call.target is None:
            raise RuntimeError("schema_check needs a target: it must run after routing or target_check")
        spec = call.target.capability
        try:
            validator = self._schemas.validator((spec.schema_hash, "input"), spec.input_schema_json)
        except InvalidSchema as exc:
            raise BadPayload(f"{call.capability} on {call.target.agent} has an unusable schema: {exc}") from exc
        try:
            value = call.payload_value  # parsed once per call, however many attempts check it
        except ValueError as exc:
            raise not_json(exc, call.capability) from exc
        check(validator, value, call.capability, "arguments")
        return await self._next(call)


def layer(schemas: SchemaCache) -> Layer:
    return lambda next: SchemaCheck(next, schemas)
