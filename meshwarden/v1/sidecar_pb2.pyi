from meshwarden.v1 import catalog_pb2 as _catalog_pb2
from meshwarden.v1 import receipts_pb2 as _receipts_pb2
from meshwarden.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterAgentRequest(_message.Message):
    __slots__ = ("version", "capabilities", "callback_address", "callback_token")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    version: str
    capabilities: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Capability]
    callback_address: str
    callback_token: str
    def __init__(self, version: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[_catalog_pb2.Capability, _Mapping]]] = ..., callback_address: _Optional[str] = ..., callback_token: _Optional[str] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("instance_id", "agent", "capabilities", "registration_id")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    agent: str
    capabilities: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Capability]
    registration_id: str
    def __init__(self, instance_id: _Optional[str] = ..., agent: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[_catalog_pb2.Capability, _Mapping]]] = ..., registration_id: _Optional[str] = ...) -> None: ...

class CheckRegistrationRequest(_message.Message):
    __slots__ = ("registration_id",)
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    def __init__(self, registration_id: _Optional[str] = ...) -> None: ...

class CheckRegistrationResponse(_message.Message):
    __slots__ = ("current",)
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    current: bool
    def __init__(self, current: _Optional[bool] = ...) -> None: ...

class InvokeRequest(_message.Message):
    __slots__ = ("capability", "payload_json", "version_range", "schema_hash", "session_id", "workflow_id", "cost_estimate_micro_usd", "idempotency_key", "parent_call_id", "task_token", "on_behalf_of", "session_labels")
    class SessionLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    VERSION_RANGE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    COST_ESTIMATE_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PARENT_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    SESSION_LABELS_FIELD_NUMBER: _ClassVar[int]
    capability: str
    payload_json: bytes
    version_range: str
    schema_hash: str
    session_id: str
    workflow_id: str
    cost_estimate_micro_usd: int
    idempotency_key: str
    parent_call_id: str
    task_token: bytes
    on_behalf_of: str
    session_labels: _containers.ScalarMap[str, str]
    def __init__(self, capability: _Optional[str] = ..., payload_json: _Optional[bytes] = ..., version_range: _Optional[str] = ..., schema_hash: _Optional[str] = ..., session_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., cost_estimate_micro_usd: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., parent_call_id: _Optional[str] = ..., task_token: _Optional[bytes] = ..., on_behalf_of: _Optional[str] = ..., session_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InvokeResponse(_message.Message):
    __slots__ = ("result_json", "instance_id", "agent", "version", "call_id", "usage")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    result_json: bytes
    instance_id: str
    agent: str
    version: str
    call_id: str
    usage: _receipts_pb2.Usage
    def __init__(self, result_json: _Optional[bytes] = ..., instance_id: _Optional[str] = ..., agent: _Optional[str] = ..., version: _Optional[str] = ..., call_id: _Optional[str] = ..., usage: _Optional[_Union[_receipts_pb2.Usage, _Mapping]] = ...) -> None: ...

class ListCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCapabilitiesResponse(_message.Message):
    __slots__ = ("instances", "revision", "breaker_states", "health")
    class BreakerStatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATES_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Instance]
    revision: int
    breaker_states: _containers.ScalarMap[str, str]
    health: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.InstanceHealth]
    def __init__(self, instances: _Optional[_Iterable[_Union[_catalog_pb2.Instance, _Mapping]]] = ..., revision: _Optional[int] = ..., breaker_states: _Optional[_Mapping[str, str]] = ..., health: _Optional[_Iterable[_Union[_catalog_pb2.InstanceHealth, _Mapping]]] = ...) -> None: ...
