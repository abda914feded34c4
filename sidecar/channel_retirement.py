"""Closing gRPC channels that an SVID rotation made stale, without cutting calls short.

The old channel is closed in the background with a grace period, so calls and streams
already on it finish (or, for watch streams, reconnect and resume by revision). The tasks
are kept so they are not garbage-collected mid-close, and cancelled at shutdown.
"""

from __future__ import annotations

import asyncio

import grpc

from meshwarden.tasks import spawn


class ChannelRetirement:
    def __init__(self, grace_s: float) -> None:
        self._grace_s = grace_s
        self._closing: set[asyncio.Task[None]] = set()

    def retire(self, channel: grpc.aio.Channel) -> None:
        task = spawn(channel.close(grace=self._grace_s), "channel-retirement")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def cancel(self) -> None:
        for task in self._closing:
            task.cancel()
