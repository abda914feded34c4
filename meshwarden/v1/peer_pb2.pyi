from meshwarden.v1 import receipts_pb2 as _receipts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerCall(_message.Message):
    __slots__ = ("call_id", "capability", "payload_json", "target_instance_id", "schema_hash", "caller_agent", "caller_instance_id", "session_id", "workflow_id", "attempt", "cost_estimate_micro_usd", "idempotency_key", "parent_call_id", "task_token", "on_behalf_of", "session_labels")
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
    TARGET_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    CALLER_AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COST_ESTIMATE_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PARENT_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    SESSION_LABELS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    capability: str
    payload_json: bytes
    target_instance_id: str
    schema_hash: str
    caller_agent: str
    caller_instance_id: str
    session_id: str
    workflow_id: str
    attempt: int
    cost_estimate_micro_usd: int
    idempotency_key: str
    parent_call_id: str
    task_token: bytes
    on_behalf_of: str
    session_labels: _containers.ScalarMap[str, str]
    def __init__(self, call_id: _Optional[str] = ..., capability: _Optional[str] = ..., payload_json: _Optional[bytes] = ..., target_instance_id: _Optional[str] = ..., schema_hash: _Optional[str] = ..., caller_agent: _Optional[str] = ..., caller_instance_id: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., attempt: _Optional[int] = ..., cost_estimate_micro_usd: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., parent_call_id: _Optional[str] = ..., task_token: _Optional[bytes] = ..., on_behalf_of: _Optional[str] = ..., session_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PeerReply(_message.Message):
    __slots__ = ("result_json", "instance_id", "agent", "version", "usage")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    result_json: bytes
    instance_id: str
    agent: str
    version: str
    usage: _receipts_pb2.Usage
    def __init__(self, result_json: _Optional[bytes] = ..., instance_id: _Optional[str] = ..., agent: _Optional[str] = ..., version: _Optional[str] = ..., usage: _Optional[_Union[_receipts_pb2.Usage, _Mapping]] = ...) -> None: ...
