import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from meshwarden.v1 import receipts_pb2 as _receipts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListAgentActivityRequest(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agents: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentActivity(_message.Message):
    __slots__ = ("agent", "sessions_running", "tasks_in_progress")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    TASKS_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    sessions_running: int
    tasks_in_progress: int
    def __init__(self, agent: _Optional[str] = ..., sessions_running: _Optional[int] = ..., tasks_in_progress: _Optional[int] = ...) -> None: ...

class ListAgentActivityResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentActivity]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentActivity, _Mapping]]] = ...) -> None: ...

class ListSuspectSessionsRequest(_message.Message):
    __slots__ = ("repeats", "retries_per_success", "spend_micro_usd", "spending_within_s", "idle_s", "limit", "cursor", "reason")
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_PER_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    SPENDING_WITHIN_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    repeats: int
    retries_per_success: float
    spend_micro_usd: int
    spending_within_s: int
    idle_s: int
    limit: int
    cursor: str
    reason: str
    def __init__(self, repeats: _Optional[int] = ..., retries_per_success: _Optional[float] = ..., spend_micro_usd: _Optional[int] = ..., spending_within_s: _Optional[int] = ..., idle_s: _Optional[int] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SuspectSession(_message.Message):
    __slots__ = ("summary", "reasons", "max_repeats", "repeated_capability", "retries", "successes")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPEATS_FIELD_NUMBER: _ClassVar[int]
    REPEATED_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    summary: _receipts_pb2.SessionSummary
    reasons: _containers.RepeatedScalarFieldContainer[str]
    max_repeats: int
    repeated_capability: str
    retries: int
    successes: int
    def __init__(self, summary: _Optional[_Union[_receipts_pb2.SessionSummary, _Mapping]] = ..., reasons: _Optional[_Iterable[str]] = ..., max_repeats: _Optional[int] = ..., repeated_capability: _Optional[str] = ..., retries: _Optional[int] = ..., successes: _Optional[int] = ...) -> None: ...

class ListSuspectSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_cursor")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SuspectSession]
    next_cursor: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[SuspectSession, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ("since", "until", "kind", "subject", "alpha", "limit", "cursor")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    kind: str
    subject: str
    alpha: float
    limit: int
    cursor: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., alpha: _Optional[float] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ChangeSide(_message.Message):
    __slots__ = ("calls", "failures", "cost_micro_usd", "successful_outcomes", "cost_per_success_micro_usd", "latency_p50_us", "latency_p99_us")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    COST_PER_SUCCESS_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_US_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_US_FIELD_NUMBER: _ClassVar[int]
    calls: int
    failures: int
    cost_micro_usd: int
    successful_outcomes: int
    cost_per_success_micro_usd: int
    latency_p50_us: int
    latency_p99_us: int
    def __init__(self, calls: _Optional[int] = ..., failures: _Optional[int] = ..., cost_micro_usd: _Optional[int] = ..., successful_outcomes: _Optional[int] = ..., cost_per_success_micro_usd: _Optional[int] = ..., latency_p50_us: _Optional[int] = ..., latency_p99_us: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("kind", "subject", "before", "after", "changed_at", "before_side", "after_side", "success_rate_p", "latency_p", "significant")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SIDE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SIDE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_P_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    subject: str
    before: str
    after: str
    changed_at: _timestamp_pb2.Timestamp
    before_side: ChangeSide
    after_side: ChangeSide
    success_rate_p: float
    latency_p: float
    significant: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., subject: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_side: _Optional[_Union[ChangeSide, _Mapping]] = ..., after_side: _Optional[_Union[ChangeSide, _Mapping]] = ..., success_rate_p: _Optional[float] = ..., latency_p: _Optional[float] = ..., significant: _Optional[_Iterable[str]] = ...) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ("changes", "next_cursor")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    next_cursor: str
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...
