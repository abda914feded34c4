"""meshwarden.v1.PeerCall / PeerReply (sidecar to sidecar) <-> Call / Reply, both ways: the
caller's sidecar encodes what the callee's decodes, so both live here."""

from __future__ import annotations

from meshwarden.sidecar import usage
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.catalog import Endpoint
from meshwarden.v1 import peer_pb2


def to_peer_call(call: Call, target: Endpoint) -> peer_pb2.PeerCall:
    return peer_pb2.PeerCall(
        call_id=call.call_id,
        capability=call.capability,
        payload_json=call.payload,
        target_instance_id=target.instance_id,
        schema_hash=target.capability.schema_hash,
        caller_agent=call.caller.agent,
        caller_instance_id=call.caller.instance_id,
        session_id=call.session_id,
        workflow_id=call.workflow_id,
        attempt=call.attempt,
        cost_estimate_micro_usd=call.cost_estimate_micro_usd,
        idempotency_key=call.idempotency_key,
        parent_call_id=call.parent_call_id,
        task_token=call.task_token,
        on_behalf_of=call.on_behalf_of,
        session_labels=dict(call.session_labels),
    )


def to_call(
    request: peer_pb2.PeerCall,
    *,
    caller: Caller,
    identity_problem: str,
    deadline: float,
    traceparent: str,
    tracestate: str,
) -> Call:
    """`caller` is who the certificate says (never the request); `identity_problem` says why
    it names no agent's sidecar, for peer_identity to refuse with."""
    return Call(
        call_id=request.call_id,
        capability=request.capability,
        payload=request.payload_json,
        caller=caller,
        claimed_caller=request.caller_agent,
        identity_problem=identity_problem,
        deadline=deadline,
        schema_hash=request.schema_hash,
        session_id=request.session_id,
        workflow_id=request.workflow_id,
        idempotency_key=request.idempotency_key,
        attempt=max(request.attempt, 1),
        cost_estimate_micro_usd=(
            request.cost_estimate_micro_usd if request.HasField("cost_estimate_micro_usd") else None
        ),
        target_instance_id=request.target_instance_id,
        parent_call_id=request.parent_call_id,
        traceparent=traceparent,
        tracestate=tracestate,
        task_token=request.task_token,
        on_behalf_of=request.on_behalf_of,
        session_labels=tuple(sorted(request.session_labels.items())),  # checked by peer_api
    )


def to_peer_reply(reply: Reply) -> peer_pb2.PeerReply:
    return peer_pb2.PeerReply(
        result_json=reply.result,
        instance_id=reply.instance_id,
        agent=reply.agent,
        version=reply.version,
        usage=usage.to_proto(reply.usage),
    )


def to_reply(reply: peer_pb2.PeerReply) -> Reply:
    return Reply(
        reply.result_json,
        reply.instance_id,
        reply.agent,
        reply.version,
        usage.from_proto(reply.usage if reply.HasField("usage") else None),
    )
