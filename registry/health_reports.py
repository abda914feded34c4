"""What sidecars report about their own agent's instances, kept in memory only.

Each reporter's last report replaces its previous one; stale ones are dropped whenever a
report arrives, registry.api.health keeps only findings about instances in the catalog that
the reporter's certificate owns, and an agent holds at most MAX_REPORTERS_PER_AGENT reports
(its oldest is dropped for a new reporter), so memory is bounded by agents times that cap
times the agent's instances, whatever ids a certificate invents. A report counts while it is fresh
(`ttl_s`, three reporting periods) and while its reporter is live: a reporter that was in the
catalog when it reported must still be there (a reporter that never registered, a pure
caller, lives by the TTL alone). For each instance, the worst state among the live reports
wins, with that report's reason ("its sidecar saw no problem" when all say HEALTHY); no live
report means HEALTHY ("no reports"). A restart
forgets everything, and sidecars report again within one period.

With replicas on a shared store, each replica also stores the reports it receives
(`share`) and adopts those the others stored (`catch_up`, from registry.replicas), so every
replica answers with every sidecar's report, whichever replica it reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from meshwarden.clock import Clock
from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.reporter_ownership import owned_reporter
from meshwarden.registry.store import HealthReportStore
from meshwarden.registry.store.records import StoredHealthReport
from meshwarden.v1 import catalog_pb2

DEFAULT_TTL_S = 30.0
MAX_INSTANCES_PER_REPORT = 10_000
MAX_REASON_CHARS = 300
MAX_REPORTERS_PER_AGENT = 256

HEALTHY = catalog_pb2.HEALTH_STATE_HEALTHY
_KNOWN_STATES = frozenset(
    {catalog_pb2.HEALTH_STATE_HEALTHY, catalog_pb2.HEALTH_STATE_DEGRADED, catalog_pb2.HEALTH_STATE_ISOLATED}
)


@dataclass(frozen=True, slots=True)
class Finding:
    state: catalog_pb2.HealthState
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    reporter_agent: str  # from the reporter's SVID
    reporter_instance_id: str
    reporter_registered: bool  # in the catalog when it reported
    findings: Mapping[str, Finding]
    reported_at: float


@dataclass(frozen=True, slots=True)
class InstanceHealth:
    instance_id: str
    state: catalog_pb2.HealthState
    reason: str
    reporters: int
    updated_at: float  # 0 when no report


def findings_from_proto(instances: Iterable[catalog_pb2.InstanceHealth]) -> dict[str, Finding]:
    """The report's findings, validated; InvalidInput names the first bad entry."""
    findings: dict[str, Finding] = {}
    for index, entry in enumerate(instances):
        where = f"instances[{index}]"
        if index >= MAX_INSTANCES_PER_REPORT:
            raise InvalidInput("instances", f"holds more than {MAX_INSTANCES_PER_REPORT} entries")
        if not entry.instance_id:
            raise InvalidInput(f"{where}.instance_id", "is required")
        if entry.state not in _KNOWN_STATES:
            raise InvalidInput(f"{where}.state", f"must be HEALTHY, DEGRADED or ISOLATED, got {entry.state}")
        findings[entry.instance_id] = Finding(entry.state, entry.reason[:MAX_REASON_CHARS])
    return findings


class HealthReports:
    def __init__(self, clock: Clock, ttl_s: float = DEFAULT_TTL_S, store: HealthReportStore | None = None) -> None:
        self._clock, self._ttl_s, self._store = clock, ttl_s, store
        self._position = 0  # in the shared store, of the last report adopted
        # By (agent, instance id): a sidecar can replace only reports made with its agent's SVID.
        self._reports: dict[tuple[str, str], Report] = {}

    def report_from(
        self,
        caller: Caller,
        reporter_instance_id: str,
        registered_agent: str | None,
        chain_owner: str | None,
        findings: Mapping[str, Finding],
        owners: Mapping[str, str],
    ) -> Report:
        """Keeps the report of `caller` as `reporter_instance_id`, whose agent in the catalog is
        `registered_agent` (None when it is not registered: a pure caller) and whose receipt
        chain was shipped by `chain_owner`; the reporter must be an instance the caller owns
        (registry.reporter_ownership). `findings` hold only instances in the catalog, and
        `owners` their agents: each must be the caller's own (PermissionDenied otherwise)."""
        if not reporter_instance_id:
            raise InvalidInput("reporter_instance_id", "is required: the reporting sidecar's own instance id")
        reporter = owned_reporter(caller, reporter_instance_id, registered_agent, chain_owner, "report health")
        for instance_id in findings:
            require_agent(caller, owners[instance_id], f"report the health of instance {instance_id}")
        return self.report(
            reporter.identity.name, reporter_instance_id, registered=reporter.registered, findings=findings
        )

    def report(
        self, reporter_agent: str, reporter_instance_id: str, *, registered: bool, findings: Mapping[str, Finding]
    ) -> Report:
        self._prune_stale()  # on arrival, not only when someone lists: memory stays bounded
        key = (reporter_agent, reporter_instance_id)
        if key not in self._reports:
            own = [k for k in self._reports if k[0] == reporter_agent]
            if len(own) >= MAX_REPORTERS_PER_AGENT:
                del self._reports[min(own, key=lambda k: self._reports[k].reported_at)]
        kept = Report(reporter_agent, reporter_instance_id, registered, findings, self._clock.wall())
        self._reports[key] = kept
        return kept

    async def share(self, report: Report) -> None:
        """Stores `report` for the other replicas (nothing without a shared store)."""
        if self._store is not None:
            stored = StoredHealthReport(
                reporter_agent=report.reporter_agent,
                reporter_instance_id=report.reporter_instance_id,
                reporter_registered=report.reporter_registered,
                findings=tuple((i, int(f.state), f.reason) for i, f in report.findings.items()),
                reported_at=report.reported_at,
            )
            await self._store.put(stored, forget_before=self._clock.wall() - self._ttl_s)

    async def catch_up(self) -> None:
        """Adopts the reports other replicas stored since the last call (newer ones only)."""
        if self._store is None:
            return
        reports, self._position = await self._store.after(self._position)
        for stored in reports:
            key = (stored.reporter_agent, stored.reporter_instance_id)
            known = self._reports.get(key)
            if known is None or known.reported_at < stored.reported_at:
                findings = {i: Finding(cast(catalog_pb2.HealthState, s), why) for i, s, why in stored.findings}
                self._reports[key] = Report(
                    stored.reporter_agent,
                    stored.reporter_instance_id,
                    stored.reporter_registered,
                    findings,
                    stored.reported_at,
                )

    def health(self, instance_ids: Iterable[str], is_registered: Callable[[str], bool]) -> list[InstanceHealth]:
        """The health of each instance in `instance_ids`, from the live reports."""
        live = self._live(is_registered)
        results = []
        for instance_id in instance_ids:
            worst: tuple[Finding, float] | None = None
            reporters, updated_at = 0, 0.0
            for report in live:
                finding = report.findings.get(instance_id)
                if finding is None:
                    continue
                reporters += 1
                updated_at = max(updated_at, report.reported_at)
                if worst is None or finding.state > worst[0].state:
                    worst = (finding, report.reported_at)
            if worst is None:
                results.append(InstanceHealth(instance_id, HEALTHY, "no reports", 0, 0.0))
                continue
            reason = worst[0].reason
            if worst[0].state == HEALTHY and not reason:
                reason = (
                    f"{reporters} of its sidecars saw no problem" if reporters > 1 else "its sidecar saw no problem"
                )
            results.append(InstanceHealth(instance_id, worst[0].state, reason, reporters, updated_at))
        return results

    def _prune_stale(self) -> None:
        oldest = self._clock.wall() - self._ttl_s
        for key in [key for key, r in self._reports.items() if r.reported_at < oldest]:
            del self._reports[key]

    def __len__(self) -> int:
        return len(self._reports)

    def _live(self, is_registered: Callable[[str], bool]) -> list[Report]:
        oldest = self._clock.wall() - self._ttl_s
        for reporter in [
            (r.reporter_agent, r.reporter_instance_id)
            for r in self._reports.values()
            if r.reported_at < oldest or (r.reporter_registered and not is_registered(r.reporter_instance_id))
        ]:
            del self._reports[reporter]
        return list(self._reports.values())
