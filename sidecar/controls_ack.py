"""Tell the registry which controls revision this sidecar enforces, so `meshwarden kill` can
answer "enforced by N/N sidecars".

One client stream, opened at the first acknowledgement and kept open while the watch stream
lasts, carries one small message per revision applied: far cheaper per change than a call each, on both ends, which
matters because every sidecar acknowledges every change at the same moment. Sent off the
watch loop, so the next event is not held up; only the newest revision matters, so a write in
progress is followed by at most one more. A broken stream is opened again at the next write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from meshwarden.tasks import spawn
from meshwarden.v1 import controls_pb2, controls_pb2_grpc

log = logging.getLogger(__name__)


class Acknowledger:
    def __init__(self, stub: Callable[[], controls_pb2_grpc.ControlsStub], instance_id: str) -> None:
        self._stub, self._instance_id = stub, instance_id
        self._wanted = 0
        self._task: asyncio.Task[None] | None = None
        self._stream: grpc.aio.StreamUnaryCall[controls_pb2.ControlsAck, controls_pb2.ControlsAckResponse] | None = None

    def acknowledge(self, revision: int) -> None:
        self._wanted = max(self._wanted, revision)
        if self._task is None or self._task.done():
            self._task = spawn(self._send(), "controls-ack")

    async def _send(self) -> None:
        sent = -1
        while sent < self._wanted:
            sent = self._wanted
            ack = controls_pb2.ControlsAck(instance_id=self._instance_id, revision=sent)
            for attempt in range(2):  # a stream the registry closed (it restarted): open a new one
                stream = self._stream
                if stream is None or stream.done():
                    stream = self._stream = self._stub().AcknowledgeControls()
                try:
                    await stream.write(ack)
                    break
                except (grpc.aio.AioRpcError, grpc.aio.UsageError) as err:
                    stream.cancel()
                    if self._stream is stream:
                        self._stream = None
                    if attempt:
                        log.warning("could not acknowledge controls revision %d: %s", sent, err)

    def watch_lost(self) -> None:
        """The watch stream broke (the registry stopped, or the connection did): end the
        acknowledgement stream too, so a stopping registry is not kept waiting for it, and
        acknowledge on a new one once the next watch stream delivers the controls again."""
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._stream is not None:
            self._stream.cancel()
