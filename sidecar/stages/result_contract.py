"""Check the local agent's result against its declared output schema before it leaves.

A result that breaks the contract is the callee's bug; the caller gets a clear INTERNAL
error naming the field, not data its code was never written to handle.
"""

from __future__ import annotations

import grpc

from meshwarden.errors import AgentFailed, BadPayload
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.schemas import SchemaCache, check, parse_payload


class ResultContract:
    def __init__(self, next: Handler, schemas: SchemaCache) -> None:
        self._next, self._schemas = next, schemas

    async def __call__(self, call: Call) -> Reply:
        reply = await self._next(call)
        if call.target is None:
            raise RuntimeError("result_contract needs a target: it must run after target_check")
        spec = call.target.capability
        validator = self._schemas.validator((spec.schema_hash, "output"), spec.output_schema_json)
        try:
            check(validator, parse_payload(reply.result, call.capability, "result"), call.capability, "result")
        except BadPayload as exc:
            raise AgentFailed(
                grpc.StatusCode.INTERNAL, f"agent {call.target.agent} broke its contract: {exc.message}"
            ) from exc
        return reply


def layer(schemas: SchemaCache) -> Layer:
    return lambda next: ResultContract(next, schemas)
