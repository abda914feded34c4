import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATE_UNSPECIFIED: _ClassVar[HealthState]
    HEALTH_STATE_HEALTHY: _ClassVar[HealthState]
    HEALTH_STATE_DEGRADED: _ClassVar[HealthState]
    HEALTH_STATE_ISOLATED: _ClassVar[HealthState]
HEALTH_STATE_UNSPECIFIED: HealthState
HEALTH_STATE_HEALTHY: HealthState
HEALTH_STATE_DEGRADED: HealthState
HEALTH_STATE_ISOLATED: HealthState

class Capability(_message.Message):
    __slots__ = ("name", "input_schema_json", "output_schema_json", "schema_hash", "description", "default_timeout_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_schema_json: str
    output_schema_json: str
    schema_hash: str
    description: str
    default_timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., output_schema_json: _Optional[str] = ..., schema_hash: _Optional[str] = ..., description: _Optional[str] = ..., default_timeout_ms: _Optional[int] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("instance_id", "agent", "version", "peer_address", "capabilities", "spiffe_id", "registered_at", "lease_expires_at", "svid_expires_at", "enrolment")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SVID_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    agent: str
    version: str
    peer_address: str
    capabilities: _containers.RepeatedCompositeFieldContainer[Capability]
    spiffe_id: str
    registered_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    svid_expires_at: _timestamp_pb2.Timestamp
    enrolment: Enrolment
    def __init__(self, instance_id: _Optional[str] = ..., agent: _Optional[str] = ..., version: _Optional[str] = ..., peer_address: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[Capability, _Mapping]]] = ..., spiffe_id: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., svid_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enrolment: _Optional[_Union[Enrolment, _Mapping]] = ...) -> None: ...

class Enrolment(_message.Message):
    __slots__ = ("how", "principal", "token_id", "claimed_user", "enrolled_at")
    HOW_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_USER_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    how: str
    principal: str
    token_id: str
    claimed_user: str
    enrolled_at: _timestamp_pb2.Timestamp
    def __init__(self, how: _Optional[str] = ..., principal: _Optional[str] = ..., token_id: _Optional[str] = ..., claimed_user: _Optional[str] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InstanceHealth(_message.Message):
    __slots__ = ("instance_id", "state", "reason", "reporters", "updated_at")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPORTERS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    state: HealthState
    reason: str
    reporters: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, instance_id: _Optional[str] = ..., state: _Optional[_Union[HealthState, str]] = ..., reason: _Optional[str] = ..., reporters: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
