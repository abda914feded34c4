"""What the tracing and metrics stages cost per call, in one process, split by part.

    PYTHONPATH=. .venv/bin/python benchmarks/telemetry_stages.py [--calls 20000] [--repeats 5]

Each case wraps a trivial inner handler (it fills the call's record as the inner stages
would, and answers at once) and runs --calls calls through it, one at a time, on one asyncio
loop, --repeats times; the figure is the best repeat's mean wall time per call (the one least
disturbed by the rest of the machine, as timeit does), and its difference to the bare
handler's. Cases:

  bare             the inner handler alone (the baseline subtracted from the others)
  metrics          the metrics stage (prometheus_client counters and a histogram)
  tracing off      the tracing stage with no tracer (no OTLP endpoint configured)
  span, unsampled  a span recorded but not exported (sampler ratio 0, the call succeeds)
  span, sampled    a span recorded and handed to the batch processor, exporter discarding
  OTLP encoding    per span, what the OTLP exporter does with a batch on the batch span
                   processor's thread before sending it (off the call path, but it holds
                   the GIL meanwhile): 512 spans of the sampled case, encoded and serialized

latency.py's mesh-traced path measures the whole thing between real processes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

try:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from meshwarden.clock import SystemClock
    from meshwarden.sidecar import tracing_setup
    from meshwarden.sidecar.call import Call, Caller, Handler, Reply
    from meshwarden.sidecar.call_metrics import SidecarMetrics
    from meshwarden.sidecar.stages import metrics, tracing
    from meshwarden.sidecar.tracing_settings import TracingSettings
    from meshwarden.usage import Usage
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(f"telemetry_stages.py: cannot import {exc.name}; run it with PYTHONPATH=<repo root>")


class Keep(SpanExporter):
    """Keeps the first `limit` spans it is given, for the encoding case; drops the rest."""

    def __init__(self, limit: int = 0) -> None:
        self.limit, self.spans = limit, list[ReadableSpan]()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans[: max(self.limit - len(self.spans), 0)])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


async def inner(call: Call) -> Reply:
    record = call.record
    record.policy_decision, record.policy_ids, record.attempt, record.breaker_state = "allow", ("p1",), 1, "closed"
    usage = Usage(model="m", input_tokens=10, output_tokens=5, cost_micro_usd=100)
    return Reply(b'{"echo":{}}', "echo-1", "echo", "1.0.0", usage)


def new_call(n: int) -> Call:
    return Call(
        call_id=f"c{n}",
        capability="echo",
        payload=b'{"data":"x"}',
        caller=Caller("bench-client", "bench-client-1", "spiffe://meshwarden.local/agent/bench-client"),
        deadline=1e12,
        session_id="s-1",
    )


async def per_call_us(handler: Handler, calls: int) -> float:
    for n in range(200):  # warm-up
        await handler(new_call(n))
    started = time.perf_counter()
    for n in range(calls):
        await handler(new_call(n))
    return (time.perf_counter() - started) / calls * 1e6


def traced(exporter: SpanExporter | None, ratio: float) -> tracing_setup.SidecarTracing | None:
    if exporter is None:
        return None
    settings = TracingSettings(enabled=True, sampler="parentbased_traceidratio", sampler_ratio=ratio)
    return tracing_setup.build(settings, agent="bench-client", instance_id="bench-client-1", exporter=exporter)


async def best_us(handler: Handler, calls: int, repeats: int) -> float:
    return min([await per_call_us(handler, calls) for _ in range(repeats)])


async def measure(calls: int, repeats: int) -> dict[str, float]:
    kind_of = lambda capability: ""  # noqa: E731 - the bundle names no kinds here
    results: dict[str, float] = {"bare": await best_us(inner, calls, repeats)}
    results["metrics"] = await best_us(
        metrics.Metrics(inner, SidecarMetrics(), "outbound", lambda c: True, SystemClock()), calls, repeats
    )
    kept = Keep(limit=512)
    cases: list[tuple[str, SpanExporter | None, float]] = [
        ("tracing off", None, 1.0),
        ("span, unsampled", Keep(), 0.0),
        ("span, sampled", kept, 1.0),
    ]
    for name, exporter, ratio in cases:
        setup = traced(exporter, ratio)
        results[name] = await best_us(tracing.Tracing(inner, setup, "outbound", kind_of), calls, repeats)
        if setup is not None:
            setup.provider.force_flush()
            setup.shutdown()
    rounds = max(calls // len(kept.spans), 1)
    encodings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            encode_spans(kept.spans).SerializeToString()
        encodings.append((time.perf_counter() - started) / (rounds * len(kept.spans)) * 1e6)
    results["OTLP encoding"] = results["bare"] + min(encodings)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per repeat of each case")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each case; the best one counts")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.calls, args.repeats))
    bare = results["bare"]
    print(f"{'case':<16} {'us/call':>8} {'over bare':>10}")
    for name, us in results.items():
        print(f"{name:<16} {us:>8.1f} {us - bare:>+10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
