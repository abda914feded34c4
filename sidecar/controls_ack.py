"""Tell the registry which controls revision this sidecar enforces, so `meshwarden kill` can
answer "enforced by N/N sidecars". Sent off the watch loop (the next event is not held up by
the acknowledgement's round trip); only the newest revision matters, so one in progress is
enough and a newer one follows it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from meshwarden.v1 import controls_pb2, controls_pb2_grpc

log = logging.getLogger(__name__)

_TIMEOUT_S = 5.0


class Acknowledger:
    def __init__(self, stub: Callable[[], controls_pb2_grpc.ControlsStub], instance_id: str) -> None:
        self._stub, self._instance_id = stub, instance_id
        self._wanted = 0
        self._task: asyncio.Task[None] | None = None

    def acknowledge(self, revision: int) -> None:
        self._wanted = max(self._wanted, revision)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send(), name="controls-ack")

    async def _send(self) -> None:
        sent = -1
        while sent < self._wanted:
            sent = self._wanted
            try:
                await self._stub().AcknowledgeControls(
                    controls_pb2.ControlsAck(instance_id=self._instance_id, revision=sent), timeout=_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as err:
                log.warning("could not acknowledge controls revision %d: %s", sent, err.details())
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
