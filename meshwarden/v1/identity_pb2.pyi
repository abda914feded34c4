import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("agent", "csr_pem", "join_token")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agent: str
    csr_pem: str
    join_token: str
    def __init__(self, agent: _Optional[str] = ..., csr_pem: _Optional[str] = ..., join_token: _Optional[str] = ...) -> None: ...

class RenewSvidRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: str
    def __init__(self, csr_pem: _Optional[str] = ...) -> None: ...

class SvidResponse(_message.Message):
    __slots__ = ("spiffe_id", "cert_chain_pem", "trust_bundle_pem", "expires_at", "registry_mtls_address")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CERT_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_MTLS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    cert_chain_pem: str
    trust_bundle_pem: str
    expires_at: _timestamp_pb2.Timestamp
    registry_mtls_address: str
    def __init__(self, spiffe_id: _Optional[str] = ..., cert_chain_pem: _Optional[str] = ..., trust_bundle_pem: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registry_mtls_address: _Optional[str] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("trust_domain", "bundle_pem", "registry_mtls_address")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_MTLS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    bundle_pem: str
    registry_mtls_address: str
    def __init__(self, trust_domain: _Optional[str] = ..., bundle_pem: _Optional[str] = ..., registry_mtls_address: _Optional[str] = ...) -> None: ...

class CreateJoinTokenRequest(_message.Message):
    __slots__ = ("agent", "ttl_s")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    agent: str
    ttl_s: int
    def __init__(self, agent: _Optional[str] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class JoinToken(_message.Message):
    __slots__ = ("token", "agent", "spiffe_id", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    agent: str
    spiffe_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., agent: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
