"""The gRPC face of the registry (meshwarden.v1.Registry): proto in, catalog call, proto out.

It makes no decisions of its own beyond who may touch which instance: every call passes
registry.authz (the caller's SVID or operator token, against the RPC's entry in the table),
and a call about one instance needs the SVID of that instance's agent. The SPIFFE ID and SVID
expiry recorded for an instance come from the certificate the sidecar presented, never from
what it wrote in the request. Errors become statuses in registry.rescue.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from meshwarden.registry import wire
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Authorizer, Caller, method, require_agent
from meshwarden.registry.bundles import BundlePublished, Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls, ControlsChanged
from meshwarden.registry.controls_server import controls_to_proto
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.health_reports import HealthReports, findings_from_proto
from meshwarden.registry.receipt_store import ReceiptStore
from meshwarden.registry.reporter_ownership import Reporter, owned_reporter
from meshwarden.registry.rescue import abort, serve_unary
from meshwarden.registry.routes import RouteChanged, Routes
from meshwarden.registry.validation import validate_agent_name
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME: Final[str] = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
REGISTER: Final = method(SERVICE_NAME, "Register")
RENEW: Final = method(SERVICE_NAME, "Renew")
DEREGISTER: Final = method(SERVICE_NAME, "Deregister")
LIST_INSTANCES: Final = method(SERVICE_NAME, "ListInstances")
WATCH: Final = method(SERVICE_NAME, "Watch")
# Sidecars report their bundle status at least this often (sidecar/app.py), so a report this
# recent means the sidecar is alive even when it is not in the catalog (a pure caller).
REPORT_FRESH_S: Final = 45.0
PUSH_BUNDLE: Final = method(SERVICE_NAME, "PushBundle")
REPORT_BUNDLE_STATUS: Final = method(SERVICE_NAME, "ReportBundleStatus")
LIST_BUNDLE_STATUS: Final = method(SERVICE_NAME, "ListBundleStatus")
SET_ROUTE: Final = method(SERVICE_NAME, "SetRoute")
LIST_ROUTES: Final = method(SERVICE_NAME, "ListRoutes")
REPORT_HEALTH: Final = method(SERVICE_NAME, "ReportHealth")

Context = grpc.aio.ServicerContext[Any, Any]


class RegistryService(registry_pb2_grpc.RegistryServicer):
    def __init__(
        self,
        catalog: Catalog,
        hub: WatchHub,
        authorizer: Authorizer,
        bundles: Bundles,
        *,
        heartbeat_interval_s: float,
        routes: Routes | None = None,
        health: HealthReports | None = None,
        controls: Controls | None = None,
        acks: Acknowledgements | None = None,
        audit: Audit | None = None,
        receipts: ReceiptStore | None = None,
    ) -> None:
        self._catalog, self._hub, self._authorizer, self._bundles = catalog, hub, authorizer, bundles
        self._receipts = receipts  # receipt chains: which pure callers' instance ids a SVID owns
        self._routes, self._health = routes, health
        self._controls, self._acks, self._audit = controls, acks, audit
        self._heartbeat_interval_s = heartbeat_interval_s

    async def Register(self, request: registry_pb2.RegisterRequest, context: Context) -> registry_pb2.RegisterResponse:
        return await serve_unary(REGISTER, self._register, request, context, self._authorizer)

    async def Renew(self, request: registry_pb2.RenewRequest, context: Context) -> registry_pb2.RenewResponse:
        return await serve_unary(RENEW, self._renew, request, context, self._authorizer)

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: Context
    ) -> registry_pb2.DeregisterResponse:
        return await serve_unary(DEREGISTER, self._deregister, request, context, self._authorizer)

    async def ListInstances(
        self, request: registry_pb2.ListInstancesRequest, context: Context
    ) -> registry_pb2.ListInstancesResponse:
        return await serve_unary(LIST_INSTANCES, self._list_instances, request, context, self._authorizer)

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        try:
            caller = self._authorizer.caller(context)
            self._authorizer.check(WATCH, caller)
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue: the error becomes a status
            await abort(context, exc, WATCH)
        # Subscribe before reading the catalog, with no await in between: every change after
        # the replay or snapshot is then in the subscription, and older ones are skipped below.
        subscription = self._hub.subscribe()
        watcher = (request.instance_id, caller.identity.spiffe_id) if caller.identity and request.instance_id else None
        if watcher is not None and self._acks is not None:
            self._acks.watching(*watcher)
        try:
            first, revision = self._catch_up(request.since_revision)
            await context.send_initial_metadata(())  # the client knows the stream is up
            if self._controls is not None:  # kill switches first: applied before anything else
                yield registry_pb2.WatchEvent(revision=revision, controls=controls_to_proto(self._controls.current()))
            for message in first:
                yield message
            bundle_revision = request.bundle_revision
            latest = self._bundles.latest()
            if latest is not None and latest.revision > bundle_revision:
                yield registry_pb2.WatchEvent(revision=revision, bundle=wire.bundle_to_proto(latest))
                bundle_revision = latest.revision
            if self._routes is not None:  # every route, replacing what the watcher had
                routes = [wire.route_to_proto(r) for r in self._routes.list()]
                yield registry_pb2.WatchEvent(
                    revision=revision, routes=registry_pb2.RouteUpdate(full=True, routes=routes)
                )
            while True:
                event = await subscription.next()
                if isinstance(event, ControlsChanged):
                    yield registry_pb2.WatchEvent(revision=revision, controls=controls_to_proto(event.controls))
                elif isinstance(event, RouteChanged):
                    update = registry_pb2.RouteUpdate(full=False, routes=[wire.route_to_proto(event.route)])
                    yield registry_pb2.WatchEvent(revision=revision, routes=update)
                elif isinstance(event, BundlePublished):
                    if event.bundle.revision > bundle_revision:
                        yield registry_pb2.WatchEvent(revision=revision, bundle=wire.bundle_to_proto(event.bundle))
                        bundle_revision = event.bundle.revision
                elif event.revision > revision:
                    yield wire.event_to_proto(event)
                    revision = event.revision
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue: the error becomes a status
            await abort(context, exc, WATCH)
        finally:
            self._hub.unsubscribe(subscription)
            if watcher is not None and self._acks is not None:
                self._acks.stopped(*watcher)

    async def PushBundle(
        self, request: registry_pb2.PushBundleRequest, context: Context
    ) -> registry_pb2.PushBundleResponse:
        return await serve_unary(PUSH_BUNDLE, self._push_bundle, request, context, self._authorizer)

    async def ReportBundleStatus(
        self, request: registry_pb2.BundleStatusReport, context: Context
    ) -> registry_pb2.BundleStatusAck:
        return await serve_unary(REPORT_BUNDLE_STATUS, self._report_bundle_status, request, context, self._authorizer)

    async def ListBundleStatus(
        self, request: registry_pb2.ListBundleStatusRequest, context: Context
    ) -> registry_pb2.ListBundleStatusResponse:
        return await serve_unary(LIST_BUNDLE_STATUS, self._list_bundle_status, request, context, self._authorizer)

    async def SetRoute(self, request: registry_pb2.SetRouteRequest, context: Context) -> registry_pb2.SetRouteResponse:
        return await serve_unary(SET_ROUTE, self._set_route, request, context, self._authorizer)

    async def ListRoutes(
        self, request: registry_pb2.ListRoutesRequest, context: Context
    ) -> registry_pb2.ListRoutesResponse:
        return await serve_unary(LIST_ROUTES, self._list_routes, request, context, self._authorizer)

    async def ReportHealth(self, request: registry_pb2.HealthReport, context: Context) -> registry_pb2.HealthReportAck:
        return await serve_unary(REPORT_HEALTH, self._report_health, request, context, self._authorizer)

    def _report_health(self, request: registry_pb2.HealthReport, caller: Caller) -> registry_pb2.HealthReportAck:
        if not request.reporter_instance_id:
            raise InvalidInput("reporter_instance_id", "is required: the reporting sidecar's own instance id")
        # As for bundle status: a registered reporter must be the caller's own instance; a pure
        # caller (never registered) reports under any id that is not another agent's instance.
        reporter = self._reporter(caller, request.reporter_instance_id, "report health")
        # Findings about instances not in the catalog are dropped: memory stays bounded by it.
        findings = {
            i: f for i, f in findings_from_proto(request.instances).items() if self._catalog.instance(i) is not None
        }
        if self._health is not None:
            self._health.report(
                reporter.identity.name, request.reporter_instance_id, registered=reporter.registered, findings=findings
            )
        return registry_pb2.HealthReportAck()

    def _reporter(self, caller: Caller, instance_id: str, action: str) -> Reporter:
        def catalog_agent(i: str) -> str | None:
            instance = self._catalog.instance(i)
            return instance.agent if instance is not None else None

        def chain_owner(i: str) -> str | None:
            head = self._receipts.head(i) if self._receipts is not None else None
            return head.sidecar_spiffe_id if head is not None else None

        return owned_reporter(caller, instance_id, catalog_agent, chain_owner, action)

    def _set_route(self, request: registry_pb2.SetRouteRequest, caller: Caller) -> registry_pb2.SetRouteResponse:
        if self._routes is None:
            raise InvalidInput("capability", "cannot be routed: this registry keeps no routes")
        stored = self._routes.set(request.capability, dict(request.weights))
        if self._audit is not None:
            weights = ",".join(f"{v}={w}" for v, w in sorted(stored.weights.items())) or "cleared"
            self._audit.record(caller, "route.set", f"route {stored.capability}", detail=weights)
        watchers = self._hub.watcher_count
        self._hub.publish(RouteChanged(route=stored))
        return registry_pb2.SetRouteResponse(route=wire.route_to_proto(stored), watchers=watchers)

    def _list_routes(
        self, _request: registry_pb2.ListRoutesRequest, _caller: Caller
    ) -> registry_pb2.ListRoutesResponse:
        routes = self._routes.list() if self._routes is not None else []
        return registry_pb2.ListRoutesResponse(routes=[wire.route_to_proto(r) for r in routes])

    def _push_bundle(self, request: registry_pb2.PushBundleRequest, caller: Caller) -> registry_pb2.PushBundleResponse:
        stored = self._bundles.push(request.artifact)
        if self._audit is not None:
            self._audit.record(
                caller, "bundle.push", f"bundle {stored.name} rev {stored.revision}", detail=stored.digest
            )
        watchers = self._hub.watcher_count
        self._hub.publish(BundlePublished(bundle=stored))
        return registry_pb2.PushBundleResponse(
            name=stored.name, revision=stored.revision, digest=stored.digest, watchers=watchers
        )

    def _report_bundle_status(
        self, request: registry_pb2.BundleStatusReport, caller: Caller
    ) -> registry_pb2.BundleStatusAck:
        # Pure callers (sidecars whose agent serves nothing) are not in the catalog, but their
        # policy matters as much: any agent SVID may report for an instance id that is not
        # another agent's.
        identity = self._reporter(caller, request.instance_id, "report the bundle status").identity
        self._bundles.report(
            instance_id=request.instance_id,
            agent=identity.name,
            active_revision=request.active_revision,
            active_digest=request.active_digest,
            refused_revision=request.refused_revision,
            refusal=request.refusal[:2000],
        )
        return registry_pb2.BundleStatusAck()

    def _list_bundle_status(
        self, request: registry_pb2.ListBundleStatusRequest, _caller: Caller
    ) -> registry_pb2.ListBundleStatusResponse:
        latest = self._bundles.latest()
        in_catalog = {i.instance_id for i in self._catalog.list_instances().instances}
        recent = self._bundles.now() - REPORT_FRESH_S
        return registry_pb2.ListBundleStatusResponse(
            latest=wire.bundle_to_proto(latest, with_artifact=False) if latest else None,
            sidecars=[
                wire.bundle_status_to_proto(s, live=s.instance_id in in_catalog or s.reported_at >= recent)
                for s in self._bundles.statuses()
            ],
        )

    def _register(self, request: registry_pb2.RegisterRequest, caller: Caller) -> registry_pb2.RegisterResponse:
        spec = wire.spec_from_proto(request.instance)
        validate_agent_name(spec.agent, "instance.agent")
        identity = require_agent(caller, spec.agent, "register instances")
        existing = self._catalog.instance(spec.instance_id)
        if existing is not None:
            require_agent(caller, existing.agent, f"replace instance {existing.instance_id}")
        spec = dataclasses.replace(spec, spiffe_id=identity.spiffe_id, svid_expires_at=caller.svid_expires_at)
        registration = self._catalog.register(spec)
        return registry_pb2.RegisterResponse(
            instance_id=registration.instance.instance_id,
            lease_ttl=wire.duration(self._catalog.lease_ttl_s),
            heartbeat_interval=wire.duration(self._heartbeat_interval_s),
            revision=registration.revision,
        )

    def _renew(self, request: registry_pb2.RenewRequest, caller: Caller) -> registry_pb2.RenewResponse:
        self._require_owner(request.instance_id, caller, "renew the lease")
        self._catalog.renew(request.instance_id, svid_expires_at=caller.svid_expires_at)
        return registry_pb2.RenewResponse(lease_ttl=wire.duration(self._catalog.lease_ttl_s))

    def _deregister(self, request: registry_pb2.DeregisterRequest, caller: Caller) -> registry_pb2.DeregisterResponse:
        self._require_owner(request.instance_id, caller, "deregister")
        self._catalog.deregister(request.instance_id)
        return registry_pb2.DeregisterResponse()

    def _require_owner(self, instance_id: str, caller: Caller, action: str) -> None:
        """PermissionDenied unless the caller is the agent of the instance (unknown ones pass:
        the catalog answers those as it always does)."""
        instance = self._catalog.instance(instance_id)
        if instance is not None:
            require_agent(caller, instance.agent, f"{action} of instance {instance_id}")

    def _list_instances(
        self, request: registry_pb2.ListInstancesRequest, _caller: Caller
    ) -> registry_pb2.ListInstancesResponse:
        listing = self._catalog.list_instances(agent=request.agent, capability=request.capability)
        health = (
            self._health.health(
                [i.instance_id for i in listing.instances], lambda i: self._catalog.instance(i) is not None
            )
            if self._health is not None
            else []
        )
        return registry_pb2.ListInstancesResponse(
            instances=wire.instances_to_proto(listing.instances),
            revision=listing.revision,
            health=[wire.health_to_proto(h) for h in health],
        )

    def _catch_up(self, since_revision: int) -> tuple[list[registry_pb2.WatchEvent], int]:
        """The replay after `since_revision` when the log holds all of it, else a snapshot;
        with the revision the watcher is at afterwards."""
        missed = self._catalog.events_after(since_revision) if since_revision > 0 else None
        if missed is not None:
            log.info("watcher resumed from revision %d: replaying %d event(s)", since_revision, len(missed))
            return [wire.event_to_proto(e) for e in missed], max([since_revision, *(e.revision for e in missed)])
        snapshot = self._catalog.snapshot()
        log.info(
            "watcher from revision %d: snapshot of %d instance(s) at revision %d",
            since_revision,
            len(snapshot.instances),
            snapshot.revision,
        )
        return [wire.snapshot_to_proto(snapshot)], snapshot.revision
