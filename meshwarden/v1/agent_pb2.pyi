from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Delivery(_message.Message):
    __slots__ = ("call_id", "capability", "payload_json", "caller_agent", "caller_spiffe_id", "session_id", "workflow_id", "attempt", "idempotency_key")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CALLER_AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    capability: str
    payload_json: bytes
    caller_agent: str
    caller_spiffe_id: str
    session_id: str
    workflow_id: str
    attempt: int
    idempotency_key: str
    def __init__(self, call_id: _Optional[str] = ..., capability: _Optional[str] = ..., payload_json: _Optional[bytes] = ..., caller_agent: _Optional[str] = ..., caller_spiffe_id: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., attempt: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: bytes
    def __init__(self, result_json: _Optional[bytes] = ...) -> None: ...
