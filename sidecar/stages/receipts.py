"""Every call leaves a receipt at this sidecar, whatever became of it: served, refused by any
stage, failed, timed out or cancelled. Outermost but for the other reporting stages, so it
sees the call as the agent (outbound) or the calling sidecar (inbound) sees it, and reads
what the inner stages learned from `call.record` once they are done, and what the call
consumed from its Reply.

The receipt is appended to the spool (sidecar.receipt_spool) before the reply or error
leaves this stage, so a call whose answer someone saw always has its receipt on disk. If the
spool cannot be written the call still gets its answer (what it did cannot be undone) and
the loss is logged with the call id.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from google.protobuf import timestamp_pb2

from meshwarden import task_fence
from meshwarden.clock import Clock
from meshwarden.errors import AgentFailed, ReceiptSpoolFull
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.call_end import SERVED, call_end_of
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.model_call import measured_usage
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolError
from meshwarden.trace_context import trace_and_span_ids
from meshwarden.usage import Usage
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

Direction = Literal["outbound", "inbound"]
# Raw arguments are kept only when the bundle asks, and only up to this size: a receipt must
# fit a shipping batch. Larger ones keep their digest only (arguments_json stays empty).
MAX_KEPT_ARGUMENTS_BYTES: Final = 1024 * 1024
MAX_ERROR_MESSAGE_CHARS: Final = 1000
# Well under a shipping batch (2 MiB) and the registry's 4 MiB message limit: a receipt the
# registry refused would hold up every later receipt of its chain.
MAX_RECEIPT_BYTES: Final = MAX_KEPT_ARGUMENTS_BYTES + 64 * 1024
MAX_FIELD_CHARS: Final = 256


class Receipts:
    def __init__(
        self,
        next: Handler,
        direction: Direction,
        spool: ReceiptSpool,
        policy: PolicyHolder,
        local: LocalAgent,
        clock: Clock,
    ) -> None:
        self._next, self._direction, self._spool, self._policy = next, direction, spool, policy
        self._local, self._clock = local, clock

    async def __call__(self, call: Call) -> Reply:
        if self._spool.full_reason is not None:  # refused before anything: no receipt to write either
            raise ReceiptSpoolFull(
                f"{call.capability} refused: {self._spool.full_reason}; calls resume once the registry takes them "
                "(check the sidecar's registry link: meshwarden_sidecar_receipt_spool_* metrics)"
            )
        started_ns = int(self._clock.wall() * 1e9)
        began = self._clock.monotonic()
        reply: Reply | None = None
        ended = SERVED
        try:
            reply = await self._next(call)
            return reply
        except BaseException as exc:
            ended = call_end_of(exc)
            raise
        finally:
            latency_s = self._clock.monotonic() - began
            # What a handler spent before it failed is kept: the failure carries it.
            spent = ended.error.usage if isinstance(ended.error, AgentFailed) else None
            receipt = self._receipt(
                call, reply, ended.code.name, ended.kind, ended.message, started_ns, latency_s, spent
            )
            try:
                self._spool.append(receipt)
            except SpoolError as exc:
                log.error("call %s (%s) has NO receipt: %s", call.call_id, call.capability, exc)

    def _receipt(
        self,
        call: Call,
        reply: Reply | None,
        status: str,
        kind: str,
        message: str,
        started_ns: int,
        latency_s: float,
        failed_usage: Usage | None = None,
    ) -> receipts_pb2.Receipt:
        record = call.record
        active = self._policy.active
        if call.model is not None:  # the callee is a model provider, named in the model fields
            callee_agent = callee_instance = callee_spiffe_id = version = ""
        elif self._direction == "outbound":
            target = record.target
            callee_agent = reply.agent if reply else target.agent if target else ""
            callee_instance = reply.instance_id if reply else target.instance_id if target else ""
            callee_spiffe_id = target.spiffe_id if target else ""
            version = reply.version if reply else str(target.version) if target else ""
        else:
            registration = self._local.registration
            callee_agent, callee_instance, callee_spiffe_id = (
                self._local.name,
                self._local.instance_id,
                self._local.spiffe_id,
            )
            version = reply.version if reply else str(registration.version) if registration else ""
        # The tracing stage (outside this one) put its span's context in the call; with
        # tracing off it is the caller's, as received.
        trace_id, span_id = trace_and_span_ids(call.traceparent)
        usage = reply.usage if reply is not None else failed_usage
        task_id, fencing_token = task_fence.claimed_task(call.task_token)
        if call.model is not None:  # a model call ended without a reply is still charged
            usage = measured_usage(usage, record.model)
        receipt = receipts_pb2.Receipt(
            task_id=task_id,
            fencing_token=fencing_token,
            direction=self._direction,
            call_id=call.call_id,
            parent_call_id=call.parent_call_id,
            session_id=call.session_id,
            workflow_id=call.workflow_id,
            trace_id=trace_id,
            span_id=span_id,
            caller_agent=call.caller.agent,
            caller_spiffe_id=call.caller.spiffe_id,
            caller_team=active.team_of(call.caller.agent) if active else "",
            callee_agent=callee_agent,
            callee_spiffe_id=callee_spiffe_id,
            callee_team=active.team_of(callee_agent) if active and callee_agent else "",
            callee_instance_id=callee_instance,
            capability=call.capability,
            version=version,
            arguments_sha256=call.payload_sha256,
            arguments_json=(
                call.payload
                if active and active.store_raw_arguments and len(call.payload) <= MAX_KEPT_ARGUMENTS_BYTES
                else b""
            ),
            status=status,
            error_kind=kind,
            error_message=message[:MAX_ERROR_MESSAGE_CHARS],
            attempt=record.attempt if self._direction == "outbound" else call.attempt,
            policy_decision=record.policy_decision,
            policy_ids=record.policy_ids,
            bundle_revision=active.revision if active else 0,
            breaker_state=record.breaker_state,
            kill_switch_id=record.kill_switch_id,
            usage=usage.to_proto() if usage is not None else None,
            budget_ids=record.budget_ids,
            budget_reserved_micro_usd=record.budget_reserved_micro_usd,
            budget_settled_micro_usd=record.budget_settled_micro_usd,
            budget_downgraded_to=record.budget_downgraded_to,
            budget_short=record.budget_short,
            started_at=_timestamp(started_ns),
            ended_at=_timestamp(started_ns + int(latency_s * 1e9)),
            latency_us=int(latency_s * 1e6),
            call_kind=call.kind,
            approval_id=record.approval_id,
            approval_decision=record.approval_decision,
            approver=record.approver,
            on_behalf_of=record.on_behalf_of,
            on_behalf_of_source=record.on_behalf_of_source,
            on_behalf_of_refused=record.on_behalf_of_refused,
            session_labels=dict(record.session_labels),
        )
        if call.model is not None:
            _add_model_fields(receipt, call)
        tool = record.tool
        if call.kind == "tool":
            server, _, name = call.capability.partition(".")
            receipt.tool_server, receipt.tool_name = server, name
            receipt.tool_result_class = record.tool_result_class if status == "OK" else "failed"
            if tool is not None:  # known once the tool check found it in the bundle
                receipt.tool_schema_sha256, receipt.tool_risk = tool.schema_sha256, tool.risk
        if receipt.ByteSize() > MAX_RECEIPT_BYTES:  # 0.3 µs; only what a peer or bundle made huge gets here
            _shrink(receipt)
        return receipt


def _add_model_fields(receipt: receipts_pb2.Receipt, call: Call) -> None:
    request, outcome = call.model, call.record.model
    assert request is not None  # the caller checked
    receipt.model_requested = call.capability
    receipt.model_provider = outcome.provider if outcome is not None and outcome.provider else request.provider
    receipt.model_api = request.api.value
    receipt.model_streamed = request.stream
    receipt.max_output_tokens = request.max_output_tokens
    receipt.attributed_to_agent_only = request.attributed_to_agent_only
    receipt.model_task_id = request.task_id
    if outcome is not None:
        receipt.model_response = outcome.response_model
        receipt.cached_input_tokens = outcome.cached_input_tokens
        receipt.model_fallback_from = outcome.fallback_from
        receipt.model_stream_cut = outcome.stream_cut
        receipt.input_tokens_estimated = outcome.input_estimated
        receipt.output_tokens_estimated = outcome.output_estimated


def _shrink(receipt: receipts_pb2.Receipt) -> None:
    """Fits a receipt under MAX_RECEIPT_BYTES, so that the registry accepts it and the chain
    never waits behind it: raw arguments go first (the digest stays), then every text field
    is cut to MAX_FIELD_CHARS, and policy ids past the first hundred."""
    receipt.ClearField("arguments_json")
    if receipt.ByteSize() <= MAX_RECEIPT_BYTES:
        return
    for field, value in receipt.ListFields():
        if field.type == field.TYPE_STRING and isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            setattr(receipt, field.name, value[:MAX_FIELD_CHARS])
    del receipt.policy_ids[100:]
    receipt.policy_ids[:] = [p[:MAX_FIELD_CHARS] for p in receipt.policy_ids]


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """Built directly: Timestamp.FromNanoseconds validates in Python, 4 µs a call on the call path."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def layer(
    direction: Direction, spool: ReceiptSpool | None, policy: PolicyHolder, local: LocalAgent, clock: Clock
) -> Layer:
    """No spool (receipts turned off, to measure what they cost): the stage is not there."""
    if spool is None:
        return lambda next: next
    return lambda next: Receipts(next, direction, spool, policy, local, clock)
