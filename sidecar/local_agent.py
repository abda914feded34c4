"""The agent this sidecar serves: its name (fixed by the sidecar's configuration, never by the
agent), its instance id, and what it declared through RegisterAgent."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import semantic_version

from meshwarden.errors import BadPayload, Unreachable
from meshwarden.schema_hash import schema_hash
from meshwarden.sidecar.catalog import CapabilitySpec, Endpoint
from meshwarden.sidecar.schemas import InvalidSchema, canonical_schema
from meshwarden.v1 import catalog_pb2

CAPABILITY_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
MAX_DEFAULT_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Registration:
    version: semantic_version.Version
    capabilities: dict[str, CapabilitySpec]
    descriptions: dict[str, str]
    generation: int = 0  # counts RegisterAgent calls; the lease confirms each by its number


class LocalAgent:
    def __init__(self, name: str, instance_id: str, peer_address: str, spiffe_id: str) -> None:
        self.name, self.instance_id = name, instance_id
        self.peer_address, self.spiffe_id = peer_address, spiffe_id
        self.registration: Registration | None = None
        self.generation = 0  # of the latest registration (0: none yet)
        # Set whenever the registration changes, so the lease loop re-registers at once.
        self.changed = asyncio.Event()
        self._listeners: list[asyncio.Event] = []
        self._closed = False

    def subscribe(self) -> asyncio.Event:
        """An event of the caller's own, set at every registration change (the lease loop clears
        `changed`, so a second loop needs its own)."""
        event = asyncio.Event()
        if self.registration is not None:
            event.set()
        self._listeners.append(event)
        return event

    def close(self) -> None:
        """The sidecar is stopping: a registration arriving now (an agent that saw the sidecar
        go and registers again at once) is refused as UNAVAILABLE, so it waits for the next
        sidecar instead of re-entering discovery after the withdrawal."""
        self._closed = True

    def withdraw(self) -> None:
        """The agent is gone (sidecar.agent_watch): forget its registration until it registers again."""
        self.registration = None
        self.changed.set()

    def register(self, version: str, capabilities: list[catalog_pb2.Capability]) -> Registration:
        """Validates what the agent declared; raises BadPayload naming the first problem."""
        if self._closed:
            raise Unreachable(f"the sidecar of {self.name} is stopping; register with it again once it is back")
        try:
            parsed_version = semantic_version.Version(version)
        except ValueError as exc:
            raise BadPayload(f"version {version!r} is not a semantic version (like 1.4.0)") from exc
        specs: dict[str, CapabilitySpec] = {}
        descriptions: dict[str, str] = {}
        for cap in capabilities:
            if not CAPABILITY_NAME.fullmatch(cap.name):
                raise BadPayload(
                    f"capability name {cap.name!r} must be 1-128 characters of a-z, 0-9, '_', '.', '-', "
                    "starting with a letter or digit"
                )
            if cap.name in specs:
                raise BadPayload(f"capability {cap.name!r} is declared twice")
            try:
                in_schema = canonical_schema(cap.input_schema_json, where=f"input schema of {cap.name}")
                out_schema = canonical_schema(cap.output_schema_json, where=f"output schema of {cap.name}")
            except InvalidSchema as exc:
                raise BadPayload(str(exc)) from exc
            if cap.default_timeout_ms > MAX_DEFAULT_TIMEOUT_MS:
                raise BadPayload(
                    f"default_timeout_ms of {cap.name} is {cap.default_timeout_ms}; declare at most "
                    f"{MAX_DEFAULT_TIMEOUT_MS} (one hour), or 0 for the sidecar's default"
                )
            specs[cap.name] = CapabilitySpec(
                cap.name,
                cap.input_schema_json,
                cap.output_schema_json,
                schema_hash(in_schema, out_schema),
                cap.default_timeout_ms / 1000.0,
            )
            descriptions[cap.name] = cap.description
        self.generation += 1
        self.registration = Registration(parsed_version, specs, descriptions, self.generation)
        self.changed.set()
        for listener in self._listeners:
            listener.set()
        return self.registration

    def endpoint(self, capability: str) -> Endpoint | None:
        reg = self.registration
        if reg is None or capability not in reg.capabilities:
            return None
        return Endpoint(
            self.instance_id, self.name, reg.version, self.peer_address, self.spiffe_id, reg.capabilities[capability]
        )

    def capability_names(self) -> list[str]:
        reg = self.registration
        return sorted(reg.capabilities) if reg else []

    def instance_proto(self) -> catalog_pb2.Instance | None:
        reg = self.registration
        if reg is None:
            return None
        return catalog_pb2.Instance(
            instance_id=self.instance_id,
            agent=self.name,
            version=str(reg.version),
            peer_address=self.peer_address,
            spiffe_id=self.spiffe_id,
            capabilities=[
                catalog_pb2.Capability(
                    name=spec.name,
                    input_schema_json=spec.input_schema_json,
                    output_schema_json=spec.output_schema_json,
                    schema_hash=spec.schema_hash,
                    description=reg.descriptions.get(spec.name, ""),
                    default_timeout_ms=round(spec.default_timeout_s * 1000),
                )
                for spec in reg.capabilities.values()
            ],
        )
