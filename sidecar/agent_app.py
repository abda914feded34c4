"""The channel to the local agent's callback endpoint: the sidecar's --app, unless the agent
names its own address when it registers (an agent that bound port 0, or a Unix socket), with
the secret the agent registered presented on every call (meshwarden.callback_auth).

The secret goes as metadata given on each call (`auth`), not through a client interceptor:
grpc.aio runs an intercepted call as an extra task with its own call object, which cost the
callee's sidecar about 5 % of its CPU per call (benchmarks/README.md, "Cheaper calls")."""

from __future__ import annotations

import grpc

from meshwarden.callback_auth import bearer_metadata
from meshwarden.v1 import agent_pb2_grpc


class AgentApp:
    def __init__(self, address: str, options: list[tuple[str, int]]) -> None:
        self._options = options
        self.address, self._token = address, ""
        self.auth: tuple[tuple[str, str], ...] = ()  # metadata every call to the agent carries
        self._channel = self._open()
        self.stub = agent_pb2_grpc.AgentStub(self._channel)

    async def retarget(self, address: str, token: str = "") -> None:
        """Calls go to `address` with `token` from now on (what the agent registered)."""
        if (address, token) == (self.address, self._token):
            return
        old = self._channel
        self.address, self._token = address, token
        self.auth = bearer_metadata(token)
        self._channel = self._open()
        self.stub = agent_pb2_grpc.AgentStub(self._channel)
        await old.close(grace=5.0)  # calls already under way on the old channel finish

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    def _open(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address, options=self._options)

    async def close(self) -> None:
        await self._channel.close()
