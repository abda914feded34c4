import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from meshwarden.v1 import catalog_pb2 as _catalog_pb2
from meshwarden.v1 import controls_pb2 as _controls_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthReport(_message.Message):
    __slots__ = ("reporter_instance_id", "instances")
    REPORTER_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    reporter_instance_id: str
    instances: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.InstanceHealth]
    def __init__(self, reporter_instance_id: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_catalog_pb2.InstanceHealth, _Mapping]]] = ...) -> None: ...

class HealthReportAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Route(_message.Message):
    __slots__ = ("capability", "weights", "updated_at")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    capability: str
    weights: _containers.ScalarMap[str, int]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, capability: _Optional[str] = ..., weights: _Optional[_Mapping[str, int]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetRouteRequest(_message.Message):
    __slots__ = ("capability", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    capability: str
    weights: _containers.ScalarMap[str, int]
    def __init__(self, capability: _Optional[str] = ..., weights: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetRouteResponse(_message.Message):
    __slots__ = ("route", "watchers")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    route: Route
    watchers: int
    def __init__(self, route: _Optional[_Union[Route, _Mapping]] = ..., watchers: _Optional[int] = ...) -> None: ...

class ListRoutesRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListRoutesResponse(_message.Message):
    __slots__ = ("routes", "next_cursor")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    next_cursor: str
    def __init__(self, routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class RouteUpdate(_message.Message):
    __slots__ = ("full", "routes")
    FULL_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    full: bool
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, full: _Optional[bool] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class PolicyBundle(_message.Message):
    __slots__ = ("name", "revision", "digest", "artifact", "pushed_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    PUSHED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    digest: str
    artifact: bytes
    pushed_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., digest: _Optional[str] = ..., artifact: _Optional[bytes] = ..., pushed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PushBundleRequest(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: bytes
    def __init__(self, artifact: _Optional[bytes] = ...) -> None: ...

class PushBundleResponse(_message.Message):
    __slots__ = ("name", "revision", "digest", "watchers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    digest: str
    watchers: int
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., digest: _Optional[str] = ..., watchers: _Optional[int] = ...) -> None: ...

class BundleStatusReport(_message.Message):
    __slots__ = ("instance_id", "active_revision", "active_digest", "refused_revision", "refusal")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    active_revision: int
    active_digest: str
    refused_revision: int
    refusal: str
    def __init__(self, instance_id: _Optional[str] = ..., active_revision: _Optional[int] = ..., active_digest: _Optional[str] = ..., refused_revision: _Optional[int] = ..., refusal: _Optional[str] = ...) -> None: ...

class BundleStatusAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBundleStatusRequest(_message.Message):
    __slots__ = ("limit", "cursor", "live_only")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    live_only: bool
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ..., live_only: _Optional[bool] = ...) -> None: ...

class BundleStatus(_message.Message):
    __slots__ = ("instance_id", "agent", "active_revision", "active_digest", "refused_revision", "refusal", "reported_at", "live")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    agent: str
    active_revision: int
    active_digest: str
    refused_revision: int
    refusal: str
    reported_at: _timestamp_pb2.Timestamp
    live: bool
    def __init__(self, instance_id: _Optional[str] = ..., agent: _Optional[str] = ..., active_revision: _Optional[int] = ..., active_digest: _Optional[str] = ..., refused_revision: _Optional[int] = ..., refusal: _Optional[str] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., live: _Optional[bool] = ...) -> None: ...

class ListBundleStatusResponse(_message.Message):
    __slots__ = ("latest", "sidecars", "next_cursor")
    LATEST_FIELD_NUMBER: _ClassVar[int]
    SIDECARS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    latest: PolicyBundle
    sidecars: _containers.RepeatedCompositeFieldContainer[BundleStatus]
    next_cursor: str
    def __init__(self, latest: _Optional[_Union[PolicyBundle, _Mapping]] = ..., sidecars: _Optional[_Iterable[_Union[BundleStatus, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _catalog_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_catalog_pb2.Instance, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("instance_id", "lease_ttl", "heartbeat_interval", "revision")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    lease_ttl: _duration_pb2.Duration
    heartbeat_interval: _duration_pb2.Duration
    revision: int
    def __init__(self, instance_id: _Optional[str] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("lease_ttl",)
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    lease_ttl: _duration_pb2.Duration
    def __init__(self, lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("agent", "capability", "limit", "cursor")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    agent: str
    capability: str
    limit: int
    cursor: str
    def __init__(self, agent: _Optional[str] = ..., capability: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "revision", "health", "next_cursor")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Instance]
    revision: int
    health: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.InstanceHealth]
    next_cursor: str
    def __init__(self, instances: _Optional[_Iterable[_Union[_catalog_pb2.Instance, _Mapping]]] = ..., revision: _Optional[int] = ..., health: _Optional[_Iterable[_Union[_catalog_pb2.InstanceHealth, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("since_revision", "bundle_revision", "instance_id", "batched")
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCHED_FIELD_NUMBER: _ClassVar[int]
    since_revision: int
    bundle_revision: int
    instance_id: str
    batched: bool
    def __init__(self, since_revision: _Optional[int] = ..., bundle_revision: _Optional[int] = ..., instance_id: _Optional[str] = ..., batched: _Optional[bool] = ...) -> None: ...

class CatalogSnapshot(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Instance]
    def __init__(self, instances: _Optional[_Iterable[_Union[_catalog_pb2.Instance, _Mapping]]] = ...) -> None: ...

class InstanceRemoved(_message.Message):
    __slots__ = ("instance_id", "reason")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    reason: str
    def __init__(self, instance_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("revision", "snapshot", "upserted", "removed", "bundle", "routes", "controls", "changes")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: CatalogSnapshot
    upserted: _catalog_pb2.Instance
    removed: InstanceRemoved
    bundle: PolicyBundle
    routes: RouteUpdate
    controls: _controls_pb2.ControlsUpdate
    changes: CatalogChanges
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[_Union[CatalogSnapshot, _Mapping]] = ..., upserted: _Optional[_Union[_catalog_pb2.Instance, _Mapping]] = ..., removed: _Optional[_Union[InstanceRemoved, _Mapping]] = ..., bundle: _Optional[_Union[PolicyBundle, _Mapping]] = ..., routes: _Optional[_Union[RouteUpdate, _Mapping]] = ..., controls: _Optional[_Union[_controls_pb2.ControlsUpdate, _Mapping]] = ..., changes: _Optional[_Union[CatalogChanges, _Mapping]] = ...) -> None: ...

class CatalogChanges(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ...) -> None: ...
