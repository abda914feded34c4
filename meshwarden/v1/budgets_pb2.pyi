import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BudgetScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_SCOPE_UNSPECIFIED: _ClassVar[BudgetScope]
    BUDGET_SCOPE_TEAM: _ClassVar[BudgetScope]
    BUDGET_SCOPE_WORKFLOW: _ClassVar[BudgetScope]
    BUDGET_SCOPE_AGENT: _ClassVar[BudgetScope]
    BUDGET_SCOPE_MODEL: _ClassVar[BudgetScope]
    BUDGET_SCOPE_SESSION: _ClassVar[BudgetScope]

class BudgetPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_PERIOD_UNSPECIFIED: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_DAY: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_MONTH: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_TOTAL: _ClassVar[BudgetPeriod]
BUDGET_SCOPE_UNSPECIFIED: BudgetScope
BUDGET_SCOPE_TEAM: BudgetScope
BUDGET_SCOPE_WORKFLOW: BudgetScope
BUDGET_SCOPE_AGENT: BudgetScope
BUDGET_SCOPE_MODEL: BudgetScope
BUDGET_SCOPE_SESSION: BudgetScope
BUDGET_PERIOD_UNSPECIFIED: BudgetPeriod
BUDGET_PERIOD_DAY: BudgetPeriod
BUDGET_PERIOD_MONTH: BudgetPeriod
BUDGET_PERIOD_TOTAL: BudgetPeriod

class Budget(_message.Message):
    __slots__ = ("id", "scope", "scope_value", "period", "limit_micro_usd", "soft_limit_micro_usd", "reason", "created_by", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: BudgetScope
    scope_value: str
    period: BudgetPeriod
    limit_micro_usd: int
    soft_limit_micro_usd: int
    reason: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[BudgetScope, str]] = ..., scope_value: _Optional[str] = ..., period: _Optional[_Union[BudgetPeriod, str]] = ..., limit_micro_usd: _Optional[int] = ..., soft_limit_micro_usd: _Optional[int] = ..., reason: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("budget", "period_key", "subject", "spent_micro_usd", "reserved_micro_usd", "in_flight_micro_usd", "remaining_micro_usd", "slices", "soft_limit_crossed", "period_ends_at")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    PERIOD_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_CROSSED_FIELD_NUMBER: _ClassVar[int]
    PERIOD_ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    period_key: str
    subject: str
    spent_micro_usd: int
    reserved_micro_usd: int
    in_flight_micro_usd: int
    remaining_micro_usd: int
    slices: int
    soft_limit_crossed: bool
    period_ends_at: _timestamp_pb2.Timestamp
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ..., period_key: _Optional[str] = ..., subject: _Optional[str] = ..., spent_micro_usd: _Optional[int] = ..., reserved_micro_usd: _Optional[int] = ..., in_flight_micro_usd: _Optional[int] = ..., remaining_micro_usd: _Optional[int] = ..., slices: _Optional[int] = ..., soft_limit_crossed: _Optional[bool] = ..., period_ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("scope", "scope_value", "period", "limit_micro_usd", "soft_limit_micro_usd", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: BudgetScope
    scope_value: str
    period: BudgetPeriod
    limit_micro_usd: int
    soft_limit_micro_usd: int
    reason: str
    def __init__(self, scope: _Optional[_Union[BudgetScope, str]] = ..., scope_value: _Optional[str] = ..., period: _Optional[_Union[BudgetPeriod, str]] = ..., limit_micro_usd: _Optional[int] = ..., soft_limit_micro_usd: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SetBudgetResponse(_message.Message):
    __slots__ = ("budget", "created")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    created: bool
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("session_id", "limit", "cursor")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    limit: int
    cursor: str
    def __init__(self, session_id: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets", "next_cursor")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetState]
    next_cursor: str
    def __init__(self, budgets: _Optional[_Iterable[_Union[BudgetState, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class LiftBudgetRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LiftBudgetResponse(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class WatchBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BudgetSet(_message.Message):
    __slots__ = ("revision", "budgets")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, revision: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class LeaseSliceRequest(_message.Message):
    __slots__ = ("instance_id", "budget_id", "subject", "slice_id", "need_micro_usd", "want_micro_usd")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    NEED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    WANT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    budget_id: str
    subject: str
    slice_id: str
    need_micro_usd: int
    want_micro_usd: int
    def __init__(self, instance_id: _Optional[str] = ..., budget_id: _Optional[str] = ..., subject: _Optional[str] = ..., slice_id: _Optional[str] = ..., need_micro_usd: _Optional[int] = ..., want_micro_usd: _Optional[int] = ...) -> None: ...

class LeaseSliceResponse(_message.Message):
    __slots__ = ("slice_id", "granted_micro_usd", "ttl", "sync_every", "exhausted", "retry_after", "state")
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    SYNC_EVERY_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    slice_id: str
    granted_micro_usd: int
    ttl: _duration_pb2.Duration
    sync_every: _duration_pb2.Duration
    exhausted: bool
    retry_after: _duration_pb2.Duration
    state: BudgetState
    def __init__(self, slice_id: _Optional[str] = ..., granted_micro_usd: _Optional[int] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., sync_every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., exhausted: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., state: _Optional[_Union[BudgetState, _Mapping]] = ...) -> None: ...

class SliceReport(_message.Message):
    __slots__ = ("slice_id", "budget_id", "subject", "used_micro_usd", "in_flight_micro_usd", "keep_micro_usd", "release")
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    USED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    KEEP_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    slice_id: str
    budget_id: str
    subject: str
    used_micro_usd: int
    in_flight_micro_usd: int
    keep_micro_usd: int
    release: bool
    def __init__(self, slice_id: _Optional[str] = ..., budget_id: _Optional[str] = ..., subject: _Optional[str] = ..., used_micro_usd: _Optional[int] = ..., in_flight_micro_usd: _Optional[int] = ..., keep_micro_usd: _Optional[int] = ..., release: _Optional[bool] = ...) -> None: ...

class SyncSlicesRequest(_message.Message):
    __slots__ = ("instance_id", "slices")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    slices: _containers.RepeatedCompositeFieldContainer[SliceReport]
    def __init__(self, instance_id: _Optional[str] = ..., slices: _Optional[_Iterable[_Union[SliceReport, _Mapping]]] = ...) -> None: ...

class SliceStatus(_message.Message):
    __slots__ = ("slice_id", "live", "recalled", "ttl", "granted_micro_usd")
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    RECALLED_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    slice_id: str
    live: bool
    recalled: bool
    ttl: _duration_pb2.Duration
    granted_micro_usd: int
    def __init__(self, slice_id: _Optional[str] = ..., live: _Optional[bool] = ..., recalled: _Optional[bool] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., granted_micro_usd: _Optional[int] = ...) -> None: ...

class SyncSlicesResponse(_message.Message):
    __slots__ = ("slices", "sync_every")
    SLICES_FIELD_NUMBER: _ClassVar[int]
    SYNC_EVERY_FIELD_NUMBER: _ClassVar[int]
    slices: _containers.RepeatedCompositeFieldContainer[SliceStatus]
    sync_every: _duration_pb2.Duration
    def __init__(self, slices: _Optional[_Iterable[_Union[SliceStatus, _Mapping]]] = ..., sync_every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
