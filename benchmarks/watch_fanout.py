"""Watchers for registry_throughput.py: many Watch streams in one child process, and how far
behind the registry's registrations each of them was.

The child enrols as agent "watcher" (open enrolment, loopback), opens `count` Watch streams
(spread over one channel per 100 streams, and round-robin over the replicas), and records, per
stream, when each message arrived and the catalog revision it brought the stream to. It reads
only the revision (a one-field message parsed from the WatchEvent's bytes: a Python load
generator that decoded every instance of every event for 1,000 streams would measure itself).
A stream that ends is reopened from the last revision it saw, and counted.

Protocol with the parent (one JSON line each way): the child prints {"ready": ...} once every
stream has its first message; the parent writes {"marks": [[t, revision], ...], "final": R}
(t: time.monotonic() when a Register answered with that revision, the same clock in both
processes); the child waits until every stream is at R, then prints the lags: for each stream
and mark, the time from the mark to the first message that brought the stream to its revision.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import statistics
import sys
import time
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.svid import svid_from_pem
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.v1 import identity_pb2, identity_pb2_grpc, registry_pb2

STREAMS_PER_CHANNEL = 100
WATCH = "/meshwarden.v1.Registry/Watch"


def _revision_reader() -> Any:
    """A message class with only WatchEvent's field 1 (revision): parsing a WatchEvent's bytes
    with it skips every other field, and the last revision in the bytes wins (as for WatchEvent)."""
    proto = descriptor_pb2.FileDescriptorProto(name="bench_peek.proto", package="bench", syntax="proto3")
    peek = proto.message_type.add(name="Peek")
    peek.field.add(
        name="revision",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Peek"))


class Stream:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.revisions: list[int] = []
        self.reopened = 0
        self.messages = 0

    @property
    def revision(self) -> int:
        return self.revisions[-1] if self.revisions else 0

    def reached(self, revision: int) -> float | None:
        """When this stream first got to `revision` or beyond (None: not yet)."""
        at = bisect.bisect_left(self.revisions, revision)
        return self.times[at] if at < len(self.times) else None


def _request(since: int) -> registry_pb2.WatchRequest:
    request = registry_pb2.WatchRequest(since_revision=since)
    if "batched" in registry_pb2.WatchRequest.DESCRIPTOR.fields_by_name:  # older checkouts lack it
        request.batched = True  # type: ignore[attr-defined,unused-ignore]
    return request


async def follow(channel: grpc.aio.Channel, stream: Stream, first: asyncio.Event, peek: Any) -> None:
    call = channel.unary_stream(
        WATCH, request_serializer=registry_pb2.WatchRequest.SerializeToString, response_deserializer=peek.FromString
    )
    while True:
        try:
            async for event in call(_request(stream.revision)):
                stream.messages += 1
                first.set()
                if event.revision > stream.revision:
                    stream.times.append(time.monotonic())
                    stream.revisions.append(event.revision)
        except grpc.aio.AioRpcError:
            pass
        stream.reopened += 1
        await asyncio.sleep(0.05)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    cuts = statistics.quantiles(values, n=100) if len(values) > 1 else [values[0]] * 99
    return {"p50_ms": 1000 * cuts[49], "p99_ms": 1000 * cuts[98], "max_ms": 1000 * max(values)}


async def watch(spec: dict[str, Any]) -> None:
    peek = _revision_reader()
    trust = RegistryTrust(spec["td"], spec["bundle"].encode())
    key = new_key_and_csr()
    async with registry_channel(spec["listen"], trust) as channel:
        reply = await identity_pb2_grpc.IdentityStub(channel).Enroll(
            identity_pb2.EnrollRequest(agent="watcher", csr_pem=key.csr_pem.decode())
        )
    svid = svid_from_pem(reply.cert_chain_pem.encode(), key.private_key_pem, reply.trust_bundle_pem.encode())
    count, replicas = int(spec["count"]), list(spec["mtls"])
    channels: list[grpc.aio.Channel] = []
    streams = [Stream() for _ in range(count)]
    tasks = []
    firsts = [asyncio.Event() for _ in streams]
    for n, stream in enumerate(streams):
        if n % (STREAMS_PER_CHANNEL * len(replicas)) < len(replicas):
            channels.append(
                registry_channel(replicas[n % len(replicas)], RegistryTrust(spec["td"], spec["bundle"].encode(), svid))
            )
        tasks.append(asyncio.create_task(follow(channels[-1], stream, firsts[n], peek)))
    await asyncio.gather(*(f.wait() for f in firsts))
    print(json.dumps({"ready": count}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    order = json.loads(line)
    final, marks = int(order["final"]), [(float(t), int(r)) for t, r in order["marks"]]
    deadline = time.monotonic() + float(order.get("wait_s", 60))
    while any(s.revision < final for s in streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    lags: list[float] = []
    behind = 0
    for stream in streams:
        for t, revision in marks:
            reached = stream.reached(revision)
            if reached is None:
                behind += 1
            else:
                lags.append(max(0.0, reached - t))
    end_t = max((t for t, _ in marks), default=time.monotonic())
    current = [s.reached(final) for s in streams]
    print(
        json.dumps(
            {
                "lag": _quantiles(lags),
                "marks_never_reached": behind,
                "all_current_after_last_ms": 1000 * (max(c for c in current if c is not None) - end_t)
                if all(c is not None for c in current)
                else None,
                "streams_not_current": sum(1 for c in current if c is None),
                "messages": sum(s.messages for s in streams),
                "reopened": sum(s.reopened for s in streams),
            }
        ),
        flush=True,
    )
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close()


def main() -> None:
    asyncio.run(watch(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
