"""A Consul agent (and its one-node cluster) in the test process, speaking the documented HTTP
API for the endpoints the sidecar uses, and recording every request it gets.

No Consul binary can be installed here, so the sidecars are tested against Consul's API as
documented. Each handler cites the page its request and response shapes come from (Consul's
documentation, https://developer.hashicorp.com/consul/api-docs/...):

- PUT /v1/agent/service/register, PUT /v1/agent/service/deregister/:id: agent/service
  ("Register Service", "Deregister Service"). Keys are matched case-insensitively and in
  snake case as well ("supports camel case and snake case"); Meta is checked against the
  limits of docs/agent/config/cli-flags#_node_meta, which service Meta shares (64 pairs, keys
  of 1-128 characters of [A-Za-z0-9_-] not starting with "consul-", values up to 512).
- PUT /v1/agent/check/pass|warn|fail/:check_id?note=: agent/check ("TTL Check Pass", ...):
  set the status and reset the TTL clock; `note` becomes the check's Output. A TTL check
  that is not renewed within its TTL turns critical; DeregisterCriticalServiceAfter reaps the
  service (agent/check "Register Check": at least one minute).
- GET /v1/health/service/:service?passing&index&wait: health ("List Service Instances for
  Service"): entries of Node, Service and Checks (the service's checks plus the node's
  serfHealth); `passing` keeps only entries whose every check passes.
- GET /v1/catalog/services?index&wait: catalog ("List Services"): service name -> tags,
  including Consul's own "consul" service.
- GET/PUT /v1/kv/:key: kv ("Read Key": a list of one entry with a base64 Value, 404 when
  absent; "Create/Update Key": the body is the value, the answer `true`).
- Blocking queries: features/blocking. Endpoints that block answer with X-Consul-Index; a
  request with `index` waits until the state moves past it or `wait` passes (default 5m).
- ACLs: api-structure#authentication: the token comes in X-Consul-Token; without the right
  one the answer is 403 "Permission denied".

The index here is one counter for the whole state (a change anywhere wakes every blocked
query), which Consul allows: "the return of a blocking request is no guarantee of a change".
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration as Consul reads them ("10s", "1m0s", "0.5s", "1h2m")."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    t: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Check:
    check_id: str
    name: str
    service_id: str
    status: str
    output: str
    ttl_s: float
    deregister_after_s: float | None
    deadline: float
    critical_since: float | None = None


@dataclass
class Service:
    service_id: str
    name: str
    tags: list[str]
    address: str
    port: int
    meta: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)  # as received


def _get(body: dict[str, Any], name: str, default: Any = None) -> Any:
    """Go's JSON decoding matches field names case-insensitively; Consul also takes snake case."""
    wanted = name.lower()
    for key, value in body.items():
        if key.replace("_", "").lower() == wanted:
            return value
    return default


class FakeConsul:
    NODE = "fake-node"
    DATACENTER = "dc1"

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self.services: dict[str, Service] = {}
        self.checks: dict[str, Check] = {}
        self.kv: dict[str, tuple[bytes, int, int]] = {}
        self.index = 10
        self._zero_index_once = False
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard variables a sidecar reads to reach this agent."""
        return {"CONSUL_HTTP_ADDR": self.address, "CONSUL_HTTP_TOKEN": self.token}

    async def start(self) -> None:
        """Listens (again, on the same port after `stop_listening`)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            if server is None or not getattr(server, "sockets", None):
                raise RuntimeError("the fake Consul did not bind")
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._expire_ttls())

    async def stop_listening(self) -> None:
        """Consul unreachable: connections refused and open ones closed; the state stays."""
        if self._runner is not None:
            for task in self._in_flight:  # a blocked query must not answer once Consul is "gone"
                task.cancel()
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.stop_listening()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)

    async def restore_older_snapshot(self, index: int) -> None:
        """The servers restored an older Raft snapshot: the index goes backwards."""
        self.index = index
        async with self._changed:
            self._changed.notify_all()

    def answer_index_zero_once(self) -> None:
        """A Consul bug the documentation warns of: the next answer to a first (non-blocking)
        read carries X-Consul-Index 0."""
        self._zero_index_once = True

    def requests_to(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def passing_ids(self, name: str) -> set[str]:
        return {e["Service"]["ID"] for e in self._entries(name) if all(c["Status"] == "passing" for c in e["Checks"])}

    # -- state changes

    async def _bump(self) -> None:
        self.index += 1
        async with self._changed:
            self._changed.notify_all()

    async def _expire_ttls(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            changed = False
            for check in list(self.checks.values()):
                if check.status != "critical" and now > check.deadline:
                    check.status, check.output, check.critical_since = "critical", "TTL expired", now
                    changed = True
                reap_after = check.deregister_after_s
                if (
                    check.critical_since is not None
                    and reap_after is not None
                    and now - check.critical_since > reap_after
                ):
                    self._remove_service(check.service_id)
                    changed = True
            if changed:
                await self._bump()

    def _remove_service(self, service_id: str) -> None:
        self.services.pop(service_id, None)
        for check_id in [c.check_id for c in self.checks.values() if c.service_id == service_id]:
            del self.checks[check_id]

    # -- HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), body))
        if self.token and request.headers.get("X-Consul-Token") != self.token:
            return web.Response(status=403, text="Permission denied")
        path = request.path
        try:
            if request.method == "PUT" and path == "/v1/agent/service/register":
                return await self._register(json.loads(body or b"{}"))
            if request.method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
                self._remove_service(path.rsplit("/", 1)[1])
                await self._bump()
                return web.Response(status=200)
            match = re.fullmatch(r"/v1/agent/check/(pass|warn|fail)/(.+)", path)
            if request.method == "PUT" and match:
                return await self._ttl_update(match[1], match[2], request.query.get("note", ""))
            if request.method == "GET" and path == "/v1/catalog/services":
                return await self._blocking(request, self._services_answer)
            if request.method == "GET" and path.startswith("/v1/health/service/"):
                name = path.removeprefix("/v1/health/service/")
                passing = request.query.get("passing", "missing") not in ("missing", "false", "0")
                return await self._blocking(request, lambda: self._health_answer(name, passing))
            if path.startswith("/v1/kv/"):
                return await self._kv(request.method, path.removeprefix("/v1/kv/"), body)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(status=404, text=f"no handler for {request.method} {path}")

    async def _register(self, body: dict[str, Any]) -> web.Response:
        name = _get(body, "Name")
        if not name:
            return web.Response(status=400, text="Missing service name")
        meta = _get(body, "Meta") or {}
        if len(meta) > 64:
            return web.Response(
                status=400, text="Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
            )
        for key, value in meta.items():
            if not _META_KEY.fullmatch(key) or key.startswith("consul-"):
                return web.Response(status=400, text=f"Invalid Service Meta: Key contains invalid characters: {key!r}")
            if len(value) > 512:
                return web.Response(
                    status=400, text=f"Invalid Service Meta: Value is too long (limit: 512 characters): {key}"
                )
        service_id = _get(body, "ID") or name
        checks = list(_get(body, "Checks") or [])
        if _get(body, "Check"):
            checks.append(_get(body, "Check"))
        self._remove_service(service_id)
        self.services[service_id] = Service(
            service_id,
            name,
            list(_get(body, "Tags") or []),
            _get(body, "Address", ""),
            int(_get(body, "Port", 0)),
            dict(meta),
            body,
        )
        for n, check in enumerate(checks):
            ttl = _get(check, "TTL")
            if not ttl:
                return web.Response(status=400, text="only TTL checks are modelled by this fake")
            after = _get(check, "DeregisterCriticalServiceAfter")
            reap = parse_duration(after) if after else None
            if reap is not None and reap < 60:
                reap = 60.0  # "The minimum timeout is 1 minute"
            check_id = (
                _get(check, "CheckID") or _get(check, "ID") or f"service:{service_id}" + (f":{n + 1}" if n else "")
            )
            status = _get(check, "Status") or "critical"
            self.checks[check_id] = Check(
                check_id,
                _get(check, "Name") or f"Service '{name}' check",
                service_id,
                status,
                "",
                parse_duration(ttl),
                reap,
                time.monotonic() + parse_duration(ttl),
                time.monotonic() if status == "critical" else None,
            )
        await self._bump()
        return web.Response(status=200)

    async def _ttl_update(self, verb: str, check_id: str, note: str) -> web.Response:
        check = self.checks.get(check_id)
        if check is None:
            return web.Response(
                status=404,
                text=f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
            )
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[verb]
        changed = status != check.status
        check.status, check.output = status, note
        check.deadline = time.monotonic() + check.ttl_s
        check.critical_since = time.monotonic() if status == "critical" else None
        if changed:
            await self._bump()
        return web.Response(status=200)

    async def _kv(self, method: str, key: str, body: bytes) -> web.Response:
        if method == "PUT":
            _, create, _ = self.kv.get(key, (b"", self.index + 1, 0))
            self.kv[key] = (body, create, self.index + 1)
            await self._bump()
            return web.json_response(True)
        if key not in self.kv:
            return web.Response(status=404, headers=self._index_headers())
        value, create, modify = self.kv[key]
        entry = {
            "CreateIndex": create,
            "ModifyIndex": modify,
            "LockIndex": 0,
            "Key": key,
            "Flags": 0,
            "Value": base64.b64encode(value).decode(),
            "Session": "",
        }
        return web.json_response([entry], headers=self._index_headers())

    async def _blocking(self, request: web.Request, answer: Any) -> web.Response:
        wanted = int(request.query.get("index", "0") or 0)
        wait_s = parse_duration(request.query.get("wait", "5m"))
        if wanted:
            try:
                async with self._changed:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.index != wanted), wait_s)
            except TimeoutError:
                pass
        return web.json_response(answer(), headers=self._index_headers(first_read=not wanted))

    def _index_headers(self, first_read: bool = False) -> dict[str, str]:
        index = self.index
        if self._zero_index_once and first_read:
            self._zero_index_once, index = False, 0
        return {"X-Consul-Index": str(index), "X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"}

    def _services_answer(self) -> dict[str, list[str]]:
        answer: dict[str, list[str]] = {"consul": []}
        for service in self.services.values():
            tags = answer.setdefault(service.name, [])
            tags.extend(t for t in service.tags if t not in tags)
        return answer

    def _health_answer(self, name: str, passing: bool) -> list[dict[str, Any]]:
        entries = self._entries(name)
        if passing:
            entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
        return entries

    def _entries(self, name: str) -> list[dict[str, Any]]:
        node = {
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": self.NODE,
            "Address": "127.0.0.1",
            "Datacenter": self.DATACENTER,
            "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
            "Meta": {},
        }
        serf = {
            "Node": self.NODE,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
        }
        entries = []
        for service in self.services.values():
            if service.name != name:
                continue
            checks = [
                {
                    "Node": self.NODE,
                    "CheckID": c.check_id,
                    "Name": c.name,
                    "Status": c.status,
                    "Notes": "",
                    "Output": c.output,
                    "ServiceID": service.service_id,
                    "ServiceName": service.name,
                    "ServiceTags": service.tags,
                }
                for c in self.checks.values()
                if c.service_id == service.service_id
            ]
            entries.append(
                {
                    "Node": node,
                    "Service": {
                        "ID": service.service_id,
                        "Service": service.name,
                        "Tags": service.tags,
                        "Address": service.address,
                        "Meta": service.meta,
                        "Port": service.port,
                        "Weights": {"Passing": 1, "Warning": 1},
                    },
                    "Checks": [*checks, serf],
                }
            )
        return entries
