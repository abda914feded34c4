"""Count every call and time it, once it has ended, from what the inner stages recorded
(policy decision and attempts in `call.record`) and what the call consumed (its Reply's
usage). The instruments are in sidecar/call_metrics.py; Prometheus reads them on the admin
port (/metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Histogram

from meshwarden.clock import Clock
from meshwarden.errors import Unclassified
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.call_end import SERVED, call_end_of
from meshwarden.sidecar.call_metrics import OTHER_CAPABILITY, SidecarMetrics

Known = Callable[[str], bool]  # whether a capability name may be a label value


class Metrics:
    def __init__(self, next: Handler, metrics: SidecarMetrics, direction: str, known: Known, clock: Clock) -> None:
        self._next, self._metrics, self._direction, self._known, self._clock = next, metrics, direction, known, clock
        self._in_flight = metrics.in_flight.labels(direction)
        # prometheus_client's labels() takes a lock and builds a key: looked up once per series.
        self._calls: dict[tuple[str, str, str], Counter] = {}
        self._per_capability: dict[str, tuple[Histogram, Counter, Counter]] = {}
        self._decisions: dict[str, Counter] = {}

    async def __call__(self, call: Call) -> Reply:
        started = self._clock.monotonic()
        ended = SERVED
        reply: Reply | None = None
        self._in_flight.inc()
        try:
            reply = await self._next(call)
            return reply
        except BaseException as exc:
            ended = call_end_of(exc)
            raise
        finally:
            self._in_flight.dec()
            # A kind this version does not know came from outside: one label value for them all.
            error = "unclassified" if isinstance(ended.error, Unclassified) else ended.kind
            self._count(call, ended.code.name, error, self._clock.monotonic() - started, reply)

    def _count(self, call: Call, status: str, error: str, elapsed_s: float, reply: Reply | None) -> None:
        m, direction = self._metrics, self._direction
        capability = call.capability if self._known(call.capability) else OTHER_CAPABILITY
        calls = self._calls.get((capability, status, error))
        if calls is None:
            calls = self._calls[(capability, status, error)] = m.calls.labels(direction, capability, status, error)
        series = self._per_capability.get(capability)
        if series is None:
            series = self._per_capability[capability] = (
                m.latency.labels(direction, capability),
                m.request_bytes.labels(direction, capability),
                m.result_bytes.labels(direction, capability),
            )
        latency, request_bytes, result_bytes = series
        calls.inc()
        latency.observe(elapsed_s)
        request_bytes.inc(len(call.payload))
        if reply is not None:
            result_bytes.inc(len(reply.result))
        record = call.record
        if record.policy_decision:
            decisions = self._decisions.get(record.policy_decision)
            if decisions is None:
                decisions = self._decisions[record.policy_decision] = m.decisions.labels(
                    direction, record.policy_decision
                )
            decisions.inc()
        if direction == "outbound" and record.attempt > 1:
            m.retries.labels(capability).inc(record.attempt - 1)
        if reply is not None and reply.usage is not None:
            m.record_usage(direction, capability, reply.usage)


def layer(metrics: SidecarMetrics, direction: str, known: Known, clock: Clock) -> Layer:
    return lambda next: Metrics(next, metrics, direction, known, clock)
