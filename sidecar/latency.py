"""How fast each instance answers this sidecar, per capability: the load routing balances on,
and the evidence health reports call an instance slow with.

Each (capability, instance) keeps two exponentially weighted moving averages of the latency,
decayed by the time between observations (time constant `tau_s`):

- `peak`, Linkerd's peak-EWMA: a latency above it replaces it at once, lower ones pull it down
  slowly. Routing's cost is `peak * (calls in flight + 1)`, and the peak decays towards zero
  while an instance gets no calls, so a slow instance gets an occasional probe and can win
  its traffic back once it is fast again.
- `smooth`, a plain EWMA: what health compares with an instance's peers (one outlier does not
  make an instance DEGRADED for the next ten seconds). Until it has seen `tau_s` worth of
  calls it weighs each new answer at least 1/n, the running mean of the n answers so far, so
  that the first answer measured does not stick.

The first call to each (capability, instance) is not measured: the first call to an instance
pays the mTLS handshake, tens of milliseconds that say nothing about the instance and would
keep it out of routing for half a minute. Until its second answer an instance has no
estimate (`peak_s` returns None). One observation is two dict lookups, one `exp` and a few
multiplications.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_TAU_S = 10.0  # Linkerd's default decay


class PeakEwma:
    __slots__ = ("peak", "smooth", "at", "calls")

    def __init__(self, now: float, latency_s: float) -> None:
        self.peak = self.smooth = latency_s
        self.at = now
        self.calls = 1

    def observe(self, now: float, latency_s: float, tau_s: float) -> None:
        if self.calls == 0:  # the first measured answer
            self.peak = self.smooth = latency_s
            self.at, self.calls = now, 1
            return
        decay = math.exp(-max(now - self.at, 0.0) / tau_s)
        self.calls += 1
        weight = max(1.0 - decay, 1.0 / self.calls)
        self.smooth += (latency_s - self.smooth) * weight
        self.peak = latency_s if latency_s > self.peak else self.peak * decay + latency_s * (1.0 - decay)
        self.at = now

    def cost(self, now: float, tau_s: float) -> float:
        """The peak, decayed towards zero for the time since the last observation."""
        return self.peak * math.exp(-max(now - self.at, 0.0) / tau_s)


@dataclass(frozen=True, slots=True)
class LatencyView:
    """One (capability, instance) as this sidecar measured it; plain data for metrics and health."""

    capability: str
    instance_id: str
    smooth_s: float
    peak_s: float
    calls: int
    last_observed_s_ago: float


class LatencyBoard:
    def __init__(self, now: Callable[[], float], tau_s: float = DEFAULT_TAU_S) -> None:
        self.now, self.tau_s = now, tau_s
        self._by_capability: dict[str, dict[str, PeakEwma]] = {}

    def observe(self, capability: str, instance_id: str, latency_s: float, now: float) -> None:
        instances = self._by_capability.get(capability)
        if instances is None:
            instances = self._by_capability[capability] = {}
        ewma = instances.get(instance_id)
        if ewma is None:  # the first call: seen, not measured (it paid for the connection)
            ewma = instances[instance_id] = PeakEwma(now, 0.0)
            ewma.calls = 0
        else:
            ewma.observe(now, latency_s, self.tau_s)

    def peak_s(self, capability: str, instance_id: str, now: float) -> float | None:
        """The instance's peak-EWMA latency for the capability, decayed to `now`; None before
        its second answer."""
        ewma = self._by_capability.get(capability, {}).get(instance_id)
        if ewma is None or ewma.calls == 0:
            return None
        return ewma.cost(now, self.tau_s)

    def snapshot(self) -> list[LatencyView]:
        now = self.now()
        return [
            LatencyView(capability, instance_id, e.smooth, e.peak, e.calls, max(now - e.at, 0.0))
            for capability, instances in self._by_capability.items()
            for instance_id, e in instances.items()
            if e.calls > 0
        ]

    def retain(self, live_instance_ids: Iterable[str]) -> None:
        """Forgets instances that left the catalog (called off the hot path)."""
        live = set(live_instance_ids)
        for capability in list(self._by_capability):
            instances = self._by_capability[capability]
            for instance_id in [i for i in instances if i not in live]:
                del instances[instance_id]
            if not instances:
                del self._by_capability[capability]
