import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApprovalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATE_UNSPECIFIED: _ClassVar[ApprovalState]
    PENDING: _ClassVar[ApprovalState]
    APPROVED: _ClassVar[ApprovalState]
    DENIED: _ClassVar[ApprovalState]
    EXPIRED: _ClassVar[ApprovalState]
    USED: _ClassVar[ApprovalState]
APPROVAL_STATE_UNSPECIFIED: ApprovalState
PENDING: ApprovalState
APPROVED: ApprovalState
DENIED: ApprovalState
EXPIRED: ApprovalState
USED: ApprovalState

class Approval(_message.Message):
    __slots__ = ("id", "state", "agent", "spiffe_id", "call_kind", "capability", "arguments_sha256", "arguments_json", "risk_factors", "policy_ids", "bundle", "session_id", "workflow_id", "call_id", "requested_at", "expires_at", "decided_at", "decided_by", "reason", "used_at", "used_by_call_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RISK_FACTORS_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USED_AT_FIELD_NUMBER: _ClassVar[int]
    USED_BY_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: ApprovalState
    agent: str
    spiffe_id: str
    call_kind: str
    capability: str
    arguments_sha256: str
    arguments_json: str
    risk_factors: _containers.RepeatedScalarFieldContainer[str]
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    bundle: str
    session_id: str
    workflow_id: str
    call_id: str
    requested_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    decided_by: str
    reason: str
    used_at: _timestamp_pb2.Timestamp
    used_by_call_id: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[ApprovalState, str]] = ..., agent: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., call_kind: _Optional[str] = ..., capability: _Optional[str] = ..., arguments_sha256: _Optional[str] = ..., arguments_json: _Optional[str] = ..., risk_factors: _Optional[_Iterable[str]] = ..., policy_ids: _Optional[_Iterable[str]] = ..., bundle: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., call_id: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., used_by_call_id: _Optional[str] = ...) -> None: ...

class RequestApprovalRequest(_message.Message):
    __slots__ = ("agent", "call_kind", "capability", "arguments_sha256", "arguments_json", "risk_factors", "policy_ids", "bundle", "session_id", "workflow_id", "call_id", "ttl_s", "approval_id")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CALL_KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RISK_FACTORS_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    agent: str
    call_kind: str
    capability: str
    arguments_sha256: str
    arguments_json: str
    risk_factors: _containers.RepeatedScalarFieldContainer[str]
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    bundle: str
    session_id: str
    workflow_id: str
    call_id: str
    ttl_s: int
    approval_id: str
    def __init__(self, agent: _Optional[str] = ..., call_kind: _Optional[str] = ..., capability: _Optional[str] = ..., arguments_sha256: _Optional[str] = ..., arguments_json: _Optional[str] = ..., risk_factors: _Optional[_Iterable[str]] = ..., policy_ids: _Optional[_Iterable[str]] = ..., bundle: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., call_id: _Optional[str] = ..., ttl_s: _Optional[int] = ..., approval_id: _Optional[str] = ...) -> None: ...

class RequestApprovalResponse(_message.Message):
    __slots__ = ("approval", "granted")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    granted: bool
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., granted: _Optional[bool] = ...) -> None: ...

class WaitApprovalRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ("all", "limit", "cursor")
    ALL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    all: bool
    limit: int
    cursor: str
    def __init__(self, all: _Optional[bool] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals", "next_cursor")
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    next_cursor: str
    def __init__(self, approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetApprovalRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DecideApprovalRequest(_message.Message):
    __slots__ = ("id", "approve", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    approve: bool
    reason: str
    def __init__(self, id: _Optional[str] = ..., approve: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
