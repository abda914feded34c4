"""The few Consul HTTP endpoints the sidecar uses, through py-consul's asyncio client, with
typed results and one error for "Consul did not do it".

py-consul returns loose JSON and raises aiohttp, asyncio and its own exceptions; this module
turns them into frozen dataclasses and `ConsulUnavailable`, so the registration and watch
loops deal with one shape. Every request has a deadline: a blocking query may hang for its
`wait` plus the up to wait/16 Consul adds, and nothing else longer than `request_timeout_s`,
so a silent network partition shows up as an error instead of a hung loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
import consul
import consul.aio

from meshwarden.sidecar.discovery.consul_settings import ConsulSettings

T = TypeVar("T")

_REQUEST_TIMEOUT_S = 10.0
_BLOCKING_MARGIN_S = 5.0


class ConsulUnavailable(Exception):
    """Consul could not be reached, timed out, or refused the request; the message says which."""


@dataclass(frozen=True, slots=True)
class Indexed(Generic[T]):
    """A blocking query's answer and the X-Consul-Index it came with."""

    index: int
    value: T


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One passing instance from /v1/health/service/<name>: the Service part of an entry."""

    service_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TtlCheck:
    check_id: str
    name: str
    ttl_s: float
    deregister_critical_after_s: float
    status: str  # the initial status: "passing", "warning" or "critical"
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """The body of PUT /v1/agent/service/register for one agent instance."""

    name: str
    service_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str]
    check: TtlCheck


def duration(seconds: float) -> str:
    """A Go duration string, as Consul parses them: 10 -> "10s", 0.5 -> "0.5s"."""
    return f"{seconds:g}s"


class ConsulApi:
    def __init__(self, settings: ConsulSettings, request_timeout_s: float = _REQUEST_TIMEOUT_S) -> None:
        self._timeout_s = request_timeout_s
        verify: bool | str = str(settings.ca_file) if settings.verify and settings.ca_file else settings.verify
        cert = (str(settings.client_cert[0]), str(settings.client_cert[1])) if settings.client_cert else None
        self._client = consul.aio.Consul(
            host=settings.address.host,
            port=settings.address.port,
            scheme=settings.scheme,
            token=settings.token or None,
            verify=verify,
            cert=cert,
        )
        self.base_url = settings.base_url

    async def services(self, index: int, wait_s: float) -> Indexed[dict[str, tuple[str, ...]]]:
        """GET /v1/catalog/services: every service name with its tags (blocking on `index`)."""
        raw_index, data = await self._call(
            self._client.catalog.services(index=index or None, wait=duration(wait_s)),
            "list services",
            self._blocking_timeout(index, wait_s),
        )
        services = {str(name): tuple(str(t) for t in tags or ()) for name, tags in (data or {}).items()}
        return Indexed(_index(raw_index), services)

    async def healthy_instances(self, name: str, index: int, wait_s: float) -> Indexed[list[ServiceEntry]]:
        """GET /v1/health/service/<name>?passing: instances whose every check passes (blocking on `index`)."""
        raw_index, data = await self._call(
            self._client.health.service(name, index=index or None, wait=duration(wait_s), passing=True),
            f"list the healthy instances of {name}",
            self._blocking_timeout(index, wait_s),
        )
        return Indexed(_index(raw_index), [_entry(item) for item in data or ()])

    async def register(self, definition: ServiceDefinition) -> None:
        check = definition.check
        body: dict[str, Any] = {
            "CheckID": check.check_id,
            "Name": check.name,
            "TTL": duration(check.ttl_s),
            "DeregisterCriticalServiceAfter": duration(check.deregister_critical_after_s),
            "Status": check.status,
        }
        if check.notes:
            body["Notes"] = check.notes
        ok = await self._call(
            self._client.agent.service.register(
                definition.name,
                service_id=definition.service_id,
                address=definition.address,
                port=definition.port,
                tags=list(definition.tags),
                meta=dict(definition.meta),
                check=body,
                replace_existing_checks=True,
            ),
            f"register service {definition.service_id}",
        )
        if not ok:
            raise ConsulUnavailable(f"Consul at {self.base_url} did not register service {definition.service_id}")

    async def update_check(self, check_id: str, status: str, note: str) -> bool:
        """PUT /v1/agent/check/{pass,warn,fail}/<id>; False when the agent does not know the
        check (it restarted, or reaped the service): register again."""
        ttl = self._client.agent.check
        call = {"passing": ttl.ttl_pass, "warning": ttl.ttl_warn, "critical": ttl.ttl_fail}[status]
        try:
            return bool(await self._call(call(check_id, notes=note), f"update check {check_id}"))
        except ConsulUnavailable as exc:
            text = str(exc)
            if "nknown check" in text or "does not have associated TTL" in text:  # older agents answer 500
                return False
            raise

    async def deregister(self, service_id: str) -> None:
        await self._call(self._client.agent.service.deregister(service_id), f"deregister service {service_id}")

    async def kv_get(self, key: str) -> bytes | None:
        _, item = await self._call(self._client.kv.get(key), f"read key {key}")
        if item is None or item.get("Value") is None:
            return None
        value = item["Value"]
        return value if isinstance(value, bytes) else str(value).encode()

    async def kv_put(self, key: str, value: bytes) -> None:
        ok = await self._call(self._client.kv.put(key, value), f"write key {key}")
        if not ok:
            raise ConsulUnavailable(f"Consul at {self.base_url} did not store key {key}")

    async def close(self) -> None:
        await self._client.close()

    def _blocking_timeout(self, index: int, wait_s: float) -> float:
        return (wait_s + wait_s / 16 + _BLOCKING_MARGIN_S) if index else self._timeout_s

    async def _call(self, request: Awaitable[Any], what: str, timeout_s: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(request, timeout_s or self._timeout_s)
        except TimeoutError as exc:
            raise ConsulUnavailable(f"Consul at {self.base_url} did not answer in time ({what})") from exc
        except aiohttp.ClientError as exc:
            raise ConsulUnavailable(f"cannot reach Consul at {self.base_url} to {what}: {exc}") from exc
        except consul.ConsulException as exc:
            raise ConsulUnavailable(f"Consul at {self.base_url} refused to {what}: {exc}") from exc


def _index(raw: object) -> int:
    try:
        return int(str(raw))
    except ValueError as exc:
        raise ConsulUnavailable(f"Consul answered with an X-Consul-Index that is not a number: {raw!r}") from exc


def _entry(item: Mapping[str, Any]) -> ServiceEntry:
    service = item.get("Service") or {}
    node = item.get("Node") or {}
    # An empty Service.Address means "the node's address" (Consul's documented default).
    address = str(service.get("Address") or node.get("Address") or "")
    meta = service.get("Meta") or {}
    return ServiceEntry(
        service_id=str(service.get("ID", "")),
        name=str(service.get("Service", "")),
        address=address,
        port=int(service.get("Port") or 0),
        tags=tuple(str(t) for t in service.get("Tags") or ()),
        meta={str(k): str(v) for k, v in meta.items()},
    )


__all__ = ["ConsulApi", "ConsulUnavailable", "Indexed", "ServiceDefinition", "ServiceEntry", "TtlCheck", "duration"]
