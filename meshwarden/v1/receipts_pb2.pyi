import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Usage(_message.Message):
    __slots__ = ("model", "input_tokens", "output_tokens", "cost_micro_usd")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    def __init__(self, model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("sidecar_instance_id", "sidecar_spiffe_id", "seq", "prev_hash", "hash", "direction", "call_id", "parent_call_id", "session_id", "workflow_id", "trace_id", "span_id", "caller_agent", "caller_spiffe_id", "caller_team", "callee_agent", "callee_spiffe_id", "callee_team", "callee_instance_id", "capability", "version", "arguments_sha256", "arguments_json", "status", "error_kind", "error_message", "attempt", "policy_decision", "policy_ids", "bundle_revision", "breaker_state", "kill_switch_id", "usage", "started_at", "ended_at", "latency_us", "task_id", "fencing_token", "call_kind", "model_provider", "model_requested", "model_response", "cached_input_tokens", "model_fallback_from", "model_api", "model_streamed", "model_stream_cut", "max_output_tokens", "attributed_to_agent_only", "model_task_id", "approval_id", "approval_decision", "approver", "tool_server", "tool_name", "tool_schema_sha256", "tool_risk", "tool_result_class", "budget_ids", "budget_reserved_micro_usd", "budget_settled_micro_usd", "budget_downgraded_to", "budget_short", "input_tokens_estimated", "output_tokens_estimated", "on_behalf_of", "on_behalf_of_source", "on_behalf_of_refused", "session_labels")
    class SessionLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SIDECAR_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_TEAM_FIELD_NUMBER: _ClassVar[int]
    CALLEE_AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLEE_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CALLEE_TEAM_FIELD_NUMBER: _ClassVar[int]
    CALLEE_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    POLICY_DECISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    KILL_SWITCH_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CALL_KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FALLBACK_FROM_FIELD_NUMBER: _ClassVar[int]
    MODEL_API_FIELD_NUMBER: _ClassVar[int]
    MODEL_STREAMED_FIELD_NUMBER: _ClassVar[int]
    MODEL_STREAM_CUT_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_TO_AGENT_ONLY_FIELD_NUMBER: _ClassVar[int]
    MODEL_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_DECISION_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    TOOL_SERVER_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_SCHEMA_SHA256_FIELD_NUMBER: _ClassVar[int]
    TOOL_RISK_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_CLASS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_IDS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RESERVED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SETTLED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DOWNGRADED_TO_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SHORT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_REFUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_LABELS_FIELD_NUMBER: _ClassVar[int]
    sidecar_instance_id: str
    sidecar_spiffe_id: str
    seq: int
    prev_hash: str
    hash: str
    direction: str
    call_id: str
    parent_call_id: str
    session_id: str
    workflow_id: str
    trace_id: str
    span_id: str
    caller_agent: str
    caller_spiffe_id: str
    caller_team: str
    callee_agent: str
    callee_spiffe_id: str
    callee_team: str
    callee_instance_id: str
    capability: str
    version: str
    arguments_sha256: str
    arguments_json: bytes
    status: str
    error_kind: str
    error_message: str
    attempt: int
    policy_decision: str
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    bundle_revision: int
    breaker_state: str
    kill_switch_id: str
    usage: Usage
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    latency_us: int
    task_id: str
    fencing_token: int
    call_kind: str
    model_provider: str
    model_requested: str
    model_response: str
    cached_input_tokens: int
    model_fallback_from: str
    model_api: str
    model_streamed: bool
    model_stream_cut: bool
    max_output_tokens: int
    attributed_to_agent_only: bool
    model_task_id: str
    approval_id: str
    approval_decision: str
    approver: str
    tool_server: str
    tool_name: str
    tool_schema_sha256: str
    tool_risk: str
    tool_result_class: str
    budget_ids: _containers.RepeatedScalarFieldContainer[str]
    budget_reserved_micro_usd: int
    budget_settled_micro_usd: int
    budget_downgraded_to: str
    budget_short: str
    input_tokens_estimated: bool
    output_tokens_estimated: bool
    on_behalf_of: str
    on_behalf_of_source: str
    on_behalf_of_refused: str
    session_labels: _containers.ScalarMap[str, str]
    def __init__(self, sidecar_instance_id: _Optional[str] = ..., sidecar_spiffe_id: _Optional[str] = ..., seq: _Optional[int] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ..., direction: _Optional[str] = ..., call_id: _Optional[str] = ..., parent_call_id: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., caller_agent: _Optional[str] = ..., caller_spiffe_id: _Optional[str] = ..., caller_team: _Optional[str] = ..., callee_agent: _Optional[str] = ..., callee_spiffe_id: _Optional[str] = ..., callee_team: _Optional[str] = ..., callee_instance_id: _Optional[str] = ..., capability: _Optional[str] = ..., version: _Optional[str] = ..., arguments_sha256: _Optional[str] = ..., arguments_json: _Optional[bytes] = ..., status: _Optional[str] = ..., error_kind: _Optional[str] = ..., error_message: _Optional[str] = ..., attempt: _Optional[int] = ..., policy_decision: _Optional[str] = ..., policy_ids: _Optional[_Iterable[str]] = ..., bundle_revision: _Optional[int] = ..., breaker_state: _Optional[str] = ..., kill_switch_id: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latency_us: _Optional[int] = ..., task_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., call_kind: _Optional[str] = ..., model_provider: _Optional[str] = ..., model_requested: _Optional[str] = ..., model_response: _Optional[str] = ..., cached_input_tokens: _Optional[int] = ..., model_fallback_from: _Optional[str] = ..., model_api: _Optional[str] = ..., model_streamed: _Optional[bool] = ..., model_stream_cut: _Optional[bool] = ..., max_output_tokens: _Optional[int] = ..., attributed_to_agent_only: _Optional[bool] = ..., model_task_id: _Optional[str] = ..., approval_id: _Optional[str] = ..., approval_decision: _Optional[str] = ..., approver: _Optional[str] = ..., tool_server: _Optional[str] = ..., tool_name: _Optional[str] = ..., tool_schema_sha256: _Optional[str] = ..., tool_risk: _Optional[str] = ..., tool_result_class: _Optional[str] = ..., budget_ids: _Optional[_Iterable[str]] = ..., budget_reserved_micro_usd: _Optional[int] = ..., budget_settled_micro_usd: _Optional[int] = ..., budget_downgraded_to: _Optional[str] = ..., budget_short: _Optional[str] = ..., input_tokens_estimated: _Optional[bool] = ..., output_tokens_estimated: _Optional[bool] = ..., on_behalf_of: _Optional[str] = ..., on_behalf_of_source: _Optional[str] = ..., on_behalf_of_refused: _Optional[str] = ..., session_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ShipReceiptsRequest(_message.Message):
    __slots__ = ("receipts", "head")
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedCompositeFieldContainer[Receipt]
    head: SignedHead
    def __init__(self, receipts: _Optional[_Iterable[_Union[Receipt, _Mapping]]] = ..., head: _Optional[_Union[SignedHead, _Mapping]] = ...) -> None: ...

class SignedHead(_message.Message):
    __slots__ = ("sidecar_instance_id", "seq", "hash", "signature", "certificate_chain")
    SIDECAR_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    sidecar_instance_id: str
    seq: int
    hash: str
    signature: bytes
    certificate_chain: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, sidecar_instance_id: _Optional[str] = ..., seq: _Optional[int] = ..., hash: _Optional[str] = ..., signature: _Optional[bytes] = ..., certificate_chain: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ShipReceiptsResponse(_message.Message):
    __slots__ = ("acknowledged_seq",)
    ACKNOWLEDGED_SEQ_FIELD_NUMBER: _ClassVar[int]
    acknowledged_seq: int
    def __init__(self, acknowledged_seq: _Optional[int] = ...) -> None: ...

class VerifyReceiptsRequest(_message.Message):
    __slots__ = ("sidecar_instance_id",)
    SIDECAR_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    sidecar_instance_id: str
    def __init__(self, sidecar_instance_id: _Optional[str] = ...) -> None: ...

class ChainVerdict(_message.Message):
    __slots__ = ("sidecar_instance_id", "receipts", "intact", "problem")
    SIDECAR_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    sidecar_instance_id: str
    receipts: int
    intact: bool
    problem: str
    def __init__(self, sidecar_instance_id: _Optional[str] = ..., receipts: _Optional[int] = ..., intact: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class VerifyReceiptsResponse(_message.Message):
    __slots__ = ("intact", "chains")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    chains: _containers.RepeatedCompositeFieldContainer[ChainVerdict]
    def __init__(self, intact: _Optional[bool] = ..., chains: _Optional[_Iterable[_Union[ChainVerdict, _Mapping]]] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("session_id", "outcome", "detail")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    outcome: str
    detail: str
    def __init__(self, session_id: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id", "workflow_id", "state", "agents", "teams", "calls", "cost_micro_usd", "started_at", "last_activity_at", "failures", "input_tokens", "output_tokens", "started_for", "launched_by", "started_for_conflict", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STARTED_FOR_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_FOR_CONFLICT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    workflow_id: str
    state: str
    agents: _containers.RepeatedScalarFieldContainer[str]
    teams: _containers.RepeatedScalarFieldContainer[str]
    calls: int
    cost_micro_usd: int
    started_at: _timestamp_pb2.Timestamp
    last_activity_at: _timestamp_pb2.Timestamp
    failures: int
    input_tokens: int
    output_tokens: int
    started_for: str
    launched_by: str
    started_for_conflict: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., state: _Optional[str] = ..., agents: _Optional[_Iterable[str]] = ..., teams: _Optional[_Iterable[str]] = ..., calls: _Optional[int] = ..., cost_micro_usd: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., started_for: _Optional[str] = ..., launched_by: _Optional[str] = ..., started_for_conflict: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("state", "agent", "team", "workflow_id", "since", "until", "limit", "order", "cursor", "started_for", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    STARTED_FOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    state: str
    agent: str
    team: str
    workflow_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    limit: int
    order: str
    cursor: str
    started_for: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, state: _Optional[str] = ..., agent: _Optional[str] = ..., team: _Optional[str] = ..., workflow_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., order: _Optional[str] = ..., cursor: _Optional[str] = ..., started_for: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_cursor")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionSummary]
    next_cursor: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionSummary, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("summary", "outcome_detail", "receipts")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_DETAIL_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    summary: SessionSummary
    outcome_detail: str
    receipts: _containers.RepeatedCompositeFieldContainer[Receipt]
    def __init__(self, summary: _Optional[_Union[SessionSummary, _Mapping]] = ..., outcome_detail: _Optional[str] = ..., receipts: _Optional[_Iterable[_Union[Receipt, _Mapping]]] = ...) -> None: ...

class CostsRequest(_message.Message):
    __slots__ = ("by", "since", "until")
    BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    by: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, by: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CostRow(_message.Message):
    __slots__ = ("key", "cost_micro_usd", "calls", "successful_outcomes", "cost_per_successful_outcome_micro_usd", "failures", "input_tokens", "output_tokens", "sessions", "failed_session_cost_micro_usd")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SUCCESSFUL_OUTCOME_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    FAILED_SESSION_COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    key: str
    cost_micro_usd: int
    calls: int
    successful_outcomes: int
    cost_per_successful_outcome_micro_usd: int
    failures: int
    input_tokens: int
    output_tokens: int
    sessions: int
    failed_session_cost_micro_usd: int
    def __init__(self, key: _Optional[str] = ..., cost_micro_usd: _Optional[int] = ..., calls: _Optional[int] = ..., successful_outcomes: _Optional[int] = ..., cost_per_successful_outcome_micro_usd: _Optional[int] = ..., failures: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., sessions: _Optional[int] = ..., failed_session_cost_micro_usd: _Optional[int] = ...) -> None: ...

class CostsResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[CostRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[CostRow, _Mapping]]] = ...) -> None: ...
