"""What the MCP endpoint speaks: JSON-RPC 2.0 over streamable HTTP, at two MCP revisions.

- 2026-07-28, the current revision: stateless. Every request carries its protocol version in
  `params._meta["io.modelcontextprotocol/protocolVersion"]` (and, over HTTP, the same in the
  `MCP-Protocol-Version` header and its method in `Mcp-Method`); `server/discover` replaces
  the handshake. An unsupported version gets error -32022 with `data: {supported, requested}`;
  headers that disagree with the body get -32020.
- 2025-11-25, the revision before: `initialize` handshake, then the negotiated version in the
  `MCP-Protocol-Version` header of every request. An `initialize` asking another version is
  answered with 2025-11-25 (the spec's counter-offer: the client decides); a header naming a
  version this endpoint does not speak gets HTTP 400 and a JSON-RPC error saying which it does.
  This endpoint gives no session id (the spec lets a server go without), so nothing is kept
  between requests: a request without the header is read as 2025-11-25.

Errors are `RpcError`s: the JSON-RPC code, a message a person can act on, the HTTP status the
revision asks for, and `data` (`{"kind": <meshwarden error kind>}` for the mesh's refusals).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

CURRENT: Final = "2026-07-28"
PREVIOUS: Final = "2025-11-25"
MODERN_VERSIONS: Final = (CURRENT,)
HANDSHAKE_VERSIONS: Final = (PREVIOUS,)
SUPPORTED: Final = (PREVIOUS, CURRENT)

VERSION_META: Final = "io.modelcontextprotocol/protocolVersion"
SERVER_INFO_META: Final = "io.modelcontextprotocol/serverInfo"
VERSION_HEADER: Final = "MCP-Protocol-Version"
METHOD_HEADER: Final = "Mcp-Method"
NAME_HEADER: Final = "Mcp-Name"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
# Implementation-defined server errors (JSON-RPC reserves -32000 to -32099): the mesh said no
# (policy, kill switch, schema drift), or the tool's server could not answer.
MESH_REFUSED: Final = -32000
MESH_UNREACHABLE: Final = -32001
UNAUTHORIZED: Final = -32002

_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}


_MALFORMED: Final = frozenset({PARSE_ERROR, INVALID_REQUEST, HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION})


class RpcError(Exception):
    def __init__(self, code: int, message: str, *, data: Mapping[str, object] | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, dict(data or {})
        self.status = status

    def http_status(self, era: Era) -> int:
        """The HTTP status for this error: the revision's table at 2026-07-28, 200 at 2025-11-25
        (a JSON-RPC error is an answer), unless the error fixes its own (401, 413, bad header)."""
        if self.status:
            return self.status
        if self.code in _MALFORMED:  # whatever the revision: the request itself is wrong
            return 400
        return _STATUS.get(self.code, 200) if era.modern else 200


@dataclass(frozen=True, slots=True)
class Era:
    """The revision one request speaks, as its headers and `_meta` say."""

    version: str
    modern: bool
    meta: Mapping[str, object] = field(default_factory=dict)


def era_of(method: str, params: Mapping[str, object], headers: Mapping[str, str]) -> Era:
    """The revision of a request; RpcError when it is one this endpoint does not speak."""
    meta = params.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    header = headers.get(VERSION_HEADER, "").strip()
    claimed = meta.get(VERSION_META)
    if claimed is not None:  # 2026-07-28 style: the version travels with each request
        if not isinstance(claimed, str):
            raise RpcError(INVALID_PARAMS, f"_meta[{VERSION_META!r}] must be a protocol version string")
        if header and header != claimed:
            raise RpcError(
                HEADER_MISMATCH,
                f"the {VERSION_HEADER} header says {header[:40]!r} but _meta says {claimed[:40]!r}; send the same version",
            )
        method_header = headers.get(METHOD_HEADER)
        if method_header is not None and method_header != method:
            raise RpcError(
                HEADER_MISMATCH,
                f"the {METHOD_HEADER} header says {method_header[:80]!r} but the body's method is {method[:80]!r}",
            )
        if claimed not in MODERN_VERSIONS:
            raise unsupported(claimed)
        return Era(claimed, True, meta)
    if method == "initialize":
        return Era(PREVIOUS, False, meta)
    if header and header not in HANDSHAKE_VERSIONS:
        if header in MODERN_VERSIONS:
            raise RpcError(
                INVALID_PARAMS,
                f"protocol {header} requests carry _meta[{VERSION_META!r}]; this one has none",
            )
        raise RpcError(
            INVALID_REQUEST,
            f"{VERSION_HEADER} {header[:40]!r} is not a protocol version this MCP endpoint speaks; it speaks "
            f"{', '.join(SUPPORTED)}",
            data={"supported": list(SUPPORTED), "requested": header[:40]},
            status=400,
        )
    return Era(PREVIOUS, False, meta)


def unsupported(requested: str) -> RpcError:
    return RpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        f"Unsupported protocol version {requested[:40]!r}: this meshwarden sidecar speaks MCP {CURRENT} "
        f"(per request) and {PREVIOUS} (initialize handshake); upgrade or downgrade the client to one of them",
        data={"supported": list(MODERN_VERSIONS), "requested": requested[:40]},
    )


def negotiated(requested: object) -> str:
    """The handshake's answer: the version asked for if spoken, else the one this endpoint
    speaks (the client then decides whether it can)."""
    return requested if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS else PREVIOUS


def modern_result(result: dict[str, object]) -> dict[str, object]:
    """A 2026-07-28 result: complete, and not to be cached by the client (what the agent may
    see changes with each bundle revision and kill switch)."""
    return {**result, "resultType": "complete", "cacheScope": "private", "ttlMs": 0}


def error_body(request_id: object, err: RpcError) -> bytes:
    error: dict[str, object] = {"code": err.code, "message": err.message}
    if err.data:
        error["data"] = err.data
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}, separators=(",", ":")).encode()


def result_body(request_id: object, result: Mapping[str, object]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, separators=(",", ":")).encode()


def raw_result_body(request_id: object, result_json: bytes) -> bytes:
    """A response around a result already encoded as JSON (a tool's answer, passed through)."""
    return b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":' + result_json + b"}"
