"""One long-lived gRPC channel per peer sidecar address, reused by every call to it."""

from __future__ import annotations

import grpc

from meshwarden.v1 import peer_pb2_grpc


class PeerChannels:
    def __init__(self, options: list[tuple[str, int]]) -> None:
        self._options = options
        self._stubs: dict[str, peer_pb2_grpc.PeerStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> peer_pb2_grpc.PeerStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
            stub = self._stubs[address] = peer_pb2_grpc.PeerStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
