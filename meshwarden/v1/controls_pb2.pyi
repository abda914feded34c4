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

class ScopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_KIND_UNSPECIFIED: _ClassVar[ScopeKind]
    SCOPE_KIND_INSTANCE: _ClassVar[ScopeKind]
    SCOPE_KIND_AGENT: _ClassVar[ScopeKind]
    SCOPE_KIND_VERSION: _ClassVar[ScopeKind]
    SCOPE_KIND_SESSION: _ClassVar[ScopeKind]
    SCOPE_KIND_WORKFLOW: _ClassVar[ScopeKind]
    SCOPE_KIND_CAPABILITY: _ClassVar[ScopeKind]
    SCOPE_KIND_TEAM: _ClassVar[ScopeKind]
    SCOPE_KIND_ALL: _ClassVar[ScopeKind]
    SCOPE_KIND_MODEL: _ClassVar[ScopeKind]
    SCOPE_KIND_PROVIDER: _ClassVar[ScopeKind]
    SCOPE_KIND_TOOL: _ClassVar[ScopeKind]
    SCOPE_KIND_MCP_SERVER: _ClassVar[ScopeKind]
SCOPE_KIND_UNSPECIFIED: ScopeKind
SCOPE_KIND_INSTANCE: ScopeKind
SCOPE_KIND_AGENT: ScopeKind
SCOPE_KIND_VERSION: ScopeKind
SCOPE_KIND_SESSION: ScopeKind
SCOPE_KIND_WORKFLOW: ScopeKind
SCOPE_KIND_CAPABILITY: ScopeKind
SCOPE_KIND_TEAM: ScopeKind
SCOPE_KIND_ALL: ScopeKind
SCOPE_KIND_MODEL: ScopeKind
SCOPE_KIND_PROVIDER: ScopeKind
SCOPE_KIND_TOOL: ScopeKind
SCOPE_KIND_MCP_SERVER: ScopeKind

class KillSwitch(_message.Message):
    __slots__ = ("id", "scope_kind", "scope_value", "reason", "created_by", "created_at", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope_kind: ScopeKind
    scope_value: str
    reason: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., scope_kind: _Optional[_Union[ScopeKind, str]] = ..., scope_value: _Optional[str] = ..., reason: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Isolation(_message.Message):
    __slots__ = ("agent", "version", "reason", "created_by", "created_at")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    version: str
    reason: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, agent: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ControlsUpdate(_message.Message):
    __slots__ = ("revision", "kill_switches", "isolations")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KILL_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    ISOLATIONS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kill_switches: _containers.RepeatedCompositeFieldContainer[KillSwitch]
    isolations: _containers.RepeatedCompositeFieldContainer[Isolation]
    def __init__(self, revision: _Optional[int] = ..., kill_switches: _Optional[_Iterable[_Union[KillSwitch, _Mapping]]] = ..., isolations: _Optional[_Iterable[_Union[Isolation, _Mapping]]] = ...) -> None: ...

class Enforcement(_message.Message):
    __slots__ = ("revision", "enforced", "expected", "took", "not_acknowledged")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    TOOK_FIELD_NUMBER: _ClassVar[int]
    NOT_ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    revision: int
    enforced: int
    expected: int
    took: _duration_pb2.Duration
    not_acknowledged: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., enforced: _Optional[int] = ..., expected: _Optional[int] = ..., took: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., not_acknowledged: _Optional[_Iterable[str]] = ...) -> None: ...

class KillRequest(_message.Message):
    __slots__ = ("scope_kind", "scope_value", "reason", "ttl", "wait")
    SCOPE_KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    scope_kind: ScopeKind
    scope_value: str
    reason: str
    ttl: _duration_pb2.Duration
    wait: _duration_pb2.Duration
    def __init__(self, scope_kind: _Optional[_Union[ScopeKind, str]] = ..., scope_value: _Optional[str] = ..., reason: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class KillResponse(_message.Message):
    __slots__ = ("kill_switch", "enforcement")
    KILL_SWITCH_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    kill_switch: KillSwitch
    enforcement: Enforcement
    def __init__(self, kill_switch: _Optional[_Union[KillSwitch, _Mapping]] = ..., enforcement: _Optional[_Union[Enforcement, _Mapping]] = ...) -> None: ...

class ListKillsRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListKillsResponse(_message.Message):
    __slots__ = ("kill_switches", "revision", "time_to_effect", "next_cursor")
    class TimeToEffectEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Enforcement
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Enforcement, _Mapping]] = ...) -> None: ...
    KILL_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_EFFECT_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    kill_switches: _containers.RepeatedCompositeFieldContainer[KillSwitch]
    revision: int
    time_to_effect: _containers.MessageMap[str, Enforcement]
    next_cursor: str
    def __init__(self, kill_switches: _Optional[_Iterable[_Union[KillSwitch, _Mapping]]] = ..., revision: _Optional[int] = ..., time_to_effect: _Optional[_Mapping[str, Enforcement]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class LiftKillRequest(_message.Message):
    __slots__ = ("id", "reason", "wait")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    wait: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LiftKillResponse(_message.Message):
    __slots__ = ("kill_switch", "enforcement")
    KILL_SWITCH_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    kill_switch: KillSwitch
    enforcement: Enforcement
    def __init__(self, kill_switch: _Optional[_Union[KillSwitch, _Mapping]] = ..., enforcement: _Optional[_Union[Enforcement, _Mapping]] = ...) -> None: ...

class IsolateRequest(_message.Message):
    __slots__ = ("target", "reason", "wait")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    target: str
    reason: str
    wait: _duration_pb2.Duration
    def __init__(self, target: _Optional[str] = ..., reason: _Optional[str] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class IsolateResponse(_message.Message):
    __slots__ = ("isolation", "enforcement")
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    isolation: Isolation
    enforcement: Enforcement
    def __init__(self, isolation: _Optional[_Union[Isolation, _Mapping]] = ..., enforcement: _Optional[_Union[Enforcement, _Mapping]] = ...) -> None: ...

class LiftIsolationRequest(_message.Message):
    __slots__ = ("target", "reason", "wait")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    target: str
    reason: str
    wait: _duration_pb2.Duration
    def __init__(self, target: _Optional[str] = ..., reason: _Optional[str] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LiftIsolationResponse(_message.Message):
    __slots__ = ("isolation", "enforcement")
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    isolation: Isolation
    enforcement: Enforcement
    def __init__(self, isolation: _Optional[_Union[Isolation, _Mapping]] = ..., enforcement: _Optional[_Union[Enforcement, _Mapping]] = ...) -> None: ...

class ListIsolationsRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListIsolationsResponse(_message.Message):
    __slots__ = ("isolations", "revision", "next_cursor")
    ISOLATIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    isolations: _containers.RepeatedCompositeFieldContainer[Isolation]
    revision: int
    next_cursor: str
    def __init__(self, isolations: _Optional[_Iterable[_Union[Isolation, _Mapping]]] = ..., revision: _Optional[int] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "at", "actor", "claimed_user", "action", "target", "reason", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_USER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    actor: str
    claimed_user: str
    action: str
    target: str
    reason: str
    detail: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., claimed_user: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since", "limit", "cursor")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    limit: int
    cursor: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "next_cursor")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_cursor: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class ControlsAck(_message.Message):
    __slots__ = ("instance_id", "revision")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    revision: int
    def __init__(self, instance_id: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ControlsAckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
