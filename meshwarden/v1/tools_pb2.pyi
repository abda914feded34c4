import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from meshwarden.v1 import receipts_pb2 as _receipts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListToolCallsRequest(_message.Message):
    __slots__ = ("agent", "tool", "server", "session_id", "decision", "since", "until", "limit", "cursor")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    agent: str
    tool: str
    server: str
    session_id: str
    decision: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    limit: int
    cursor: str
    def __init__(self, agent: _Optional[str] = ..., tool: _Optional[str] = ..., server: _Optional[str] = ..., session_id: _Optional[str] = ..., decision: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListToolCallsResponse(_message.Message):
    __slots__ = ("receipts", "truncated", "next_cursor")
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedCompositeFieldContainer[_receipts_pb2.Receipt]
    truncated: bool
    next_cursor: str
    def __init__(self, receipts: _Optional[_Iterable[_Union[_receipts_pb2.Receipt, _Mapping]]] = ..., truncated: _Optional[bool] = ..., next_cursor: _Optional[str] = ...) -> None: ...
