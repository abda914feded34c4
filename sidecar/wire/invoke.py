"""meshwarden.v1.InvokeRequest / InvokeResponse (the agent's local API) <-> Call / Reply.

The request comes from the local agent, so it is checked here, at the edge: names and keys
have length limits, and a message says what to send instead."""

from __future__ import annotations

from meshwarden import identifiers, session_labels
from meshwarden.errors import BadPayload
from meshwarden.session_labels import Labels
from meshwarden.sidecar import usage
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.local_agent import CAPABILITY_NAME
from meshwarden.sidecar.wire.approval_headers import WAIT_WITHOUT_ID, ApprovalOptions
from meshwarden.v1 import sidecar_pb2

MAX_ID_CHARS = 128


MAX_TASK_TOKEN_BYTES = 1024  # a signed claim is about 200 bytes


def to_call(
    request: sidecar_pb2.InvokeRequest,
    *,
    call_id: str,
    caller: Caller,
    deadline: float,
    traceparent: str,
    tracestate: str,
    approval: ApprovalOptions = WAIT_WITHOUT_ID,
) -> Call:
    _check(request)
    return Call(
        call_id=call_id,
        capability=request.capability,
        payload=request.payload_json,
        caller=caller,
        deadline=deadline,
        version_range=request.version_range.strip(),
        schema_hash=request.schema_hash.strip(),
        session_id=request.session_id,
        workflow_id=request.workflow_id,
        idempotency_key=request.idempotency_key,
        parent_call_id=request.parent_call_id,
        cost_estimate_micro_usd=(
            request.cost_estimate_micro_usd if request.HasField("cost_estimate_micro_usd") else None
        ),
        traceparent=traceparent,
        tracestate=tracestate,
        task_token=request.task_token,
        approval_id=approval.approval_id,
        approval_wait=approval.wait,
        on_behalf_of=request.on_behalf_of,
        session_labels=_labels(request),
    )


def to_response(reply: Reply, call_id: str) -> sidecar_pb2.InvokeResponse:
    return sidecar_pb2.InvokeResponse(
        result_json=reply.result,
        instance_id=reply.instance_id,
        agent=reply.agent,
        version=reply.version,
        call_id=call_id,
        usage=usage.to_proto(reply.usage),
    )


def _labels(request: sidecar_pb2.InvokeRequest) -> Labels:
    try:
        return session_labels.checked(request.session_labels)
    except session_labels.InvalidLabels as exc:
        raise BadPayload(f"call to {request.capability}: {exc.message}") from None


def _check(request: sidecar_pb2.InvokeRequest) -> None:
    if not CAPABILITY_NAME.fullmatch(request.capability):
        raise BadPayload(
            f"capability {request.capability!r} is not a capability name (1-128 characters of a-z, 0-9, '_', '.', '-')"
        )
    if not request.payload_json:
        raise BadPayload(f"payload_json for {request.capability} is empty; send JSON text, e.g. {{}}")
    if len(request.parent_call_id) > MAX_ID_CHARS:
        raise BadPayload(
            f"parent_call_id for {request.capability} is {len(request.parent_call_id)} characters; "
            f"send the call_id of the call being handled (at most {MAX_ID_CHARS})"
        )
    if len(request.idempotency_key) > MAX_ID_CHARS:
        raise BadPayload(
            f"idempotency_key for {request.capability} is {len(request.idempotency_key)} characters; "
            f"send at most {MAX_ID_CHARS} (a UUID is plenty)"
        )
    problem = identifiers.first_problem(  # every identifier bounded, none with control characters
        {
            "session_id": request.session_id,
            "workflow_id": request.workflow_id,
            "parent_call_id": request.parent_call_id,
            "idempotency_key": request.idempotency_key,
            "schema_hash": request.schema_hash,
            "version_range": request.version_range,
            "on_behalf_of": request.on_behalf_of,
        }
    )
    if problem is not None:
        raise BadPayload(f"call to {request.capability}: {problem}")
    if len(request.task_token) > MAX_TASK_TOKEN_BYTES:
        raise BadPayload(
            f"task_token for {request.capability} is {len(request.task_token)} bytes; send the signed_token "
            f"the task's lease or heartbeat returned (at most {MAX_TASK_TOKEN_BYTES})"
        )
