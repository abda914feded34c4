from meshwarden.v1 import receipts_pb2 as _receipts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Delivery(_message.Message):
    __slots__ = ("call_id", "capability", "payload_json", "caller_agent", "caller_spiffe_id", "session_id", "workflow_id", "attempt", "idempotency_key", "parent_call_id", "task_id", "fencing_token", "task_token", "on_behalf_of", "session_labels", "caller_timeout_ms")
    class SessionLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CALLER_AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PARENT_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    SESSION_LABELS_FIELD_NUMBER: _ClassVar[int]
    CALLER_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    capability: str
    payload_json: bytes
    caller_agent: str
    caller_spiffe_id: str
    session_id: str
    workflow_id: str
    attempt: int
    idempotency_key: str
    parent_call_id: str
    task_id: str
    fencing_token: int
    task_token: bytes
    on_behalf_of: str
    session_labels: _containers.ScalarMap[str, str]
    caller_timeout_ms: int
    def __init__(self, call_id: _Optional[str] = ..., capability: _Optional[str] = ..., payload_json: _Optional[bytes] = ..., caller_agent: _Optional[str] = ..., caller_spiffe_id: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., attempt: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., parent_call_id: _Optional[str] = ..., task_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., task_token: _Optional[bytes] = ..., on_behalf_of: _Optional[str] = ..., session_labels: _Optional[_Mapping[str, str]] = ..., caller_timeout_ms: _Optional[int] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("result_json", "usage")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    result_json: bytes
    usage: _receipts_pb2.Usage
    def __init__(self, result_json: _Optional[bytes] = ..., usage: _Optional[_Union[_receipts_pb2.Usage, _Mapping]] = ...) -> None: ...
