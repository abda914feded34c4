"""Fail fast on an MCP server whose recent calls keep failing: the breaker stage's logic, one
breaker per server (on a board of their own, so server names never meet instance ids)."""

from __future__ import annotations

from meshwarden.errors import MeshError, ToolServerCircuitOpen
from meshwarden.sidecar.call import Call, Layer
from meshwarden.sidecar.stages.breaker import Breaker, BreakerBoard


class ToolServerBreaker(Breaker):
    def key(self, call: Call) -> str:
        return call.capability.partition(".")[0] if call.kind == "tool" else ""  # SERVER of SERVER.TOOL

    def open_error(self, call: Call, key: str, retry_in_s: float, reason: str) -> MeshError:
        return ToolServerCircuitOpen(key, retry_in_s, reason)


def layer(board: BreakerBoard) -> Layer:
    return lambda next: ToolServerBreaker(next, board)
