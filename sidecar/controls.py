"""The operator controls this sidecar enforces: kill switches indexed by scope, isolated
versions, and the calls in flight a new switch may have to cancel.

The registry sends the whole set on every change (ControlsUpdate on the watch stream); `apply`
replaces the index at once and returns the switches that are new, so the in-flight calls they
match are cancelled. The set is persisted in `<data-dir>/controls/last.pb` (0600) and loaded at
start-up before any port opens, so a restarted sidecar enforces what it last knew even while
the registry is down.

What it costs a call: with no switch in force, one attribute test (`if controls.empty`). With
switches, one dict lookup per fact of the call (its caller, callee, session, workflow,
capability, team), never a scan of the switches. Tracking calls in flight is one set insert and
one removal per call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from google.protobuf.message import DecodeError

from meshwarden.control_scopes import describe
from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.tasks import spawn
from meshwarden.v1 import controls_pb2

log = logging.getLogger(__name__)

ALL: Final = controls_pb2.SCOPE_KIND_ALL
INSTANCE: Final = controls_pb2.SCOPE_KIND_INSTANCE
AGENT: Final = controls_pb2.SCOPE_KIND_AGENT
VERSION: Final = controls_pb2.SCOPE_KIND_VERSION
SESSION: Final = controls_pb2.SCOPE_KIND_SESSION
WORKFLOW: Final = controls_pb2.SCOPE_KIND_WORKFLOW
CAPABILITY: Final = controls_pb2.SCOPE_KIND_CAPABILITY
TEAM: Final = controls_pb2.SCOPE_KIND_TEAM
MODEL: Final = controls_pb2.SCOPE_KIND_MODEL
PROVIDER: Final = controls_pb2.SCOPE_KIND_PROVIDER
TOOL: Final = controls_pb2.SCOPE_KIND_TOOL
MCP_SERVER: Final = controls_pb2.SCOPE_KIND_MCP_SERVER
LAST_FILE: Final = "last.pb"
SAVE_DELAY_S: Final = 0.5

# What a call is, as scopes see it: (scope kind, value) pairs such as (AGENT, "billing").
Fact = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Switch:
    id: str
    kind: int
    value: str
    reason: str
    expires_at: float | None  # wall clock; None: until lifted

    @property
    def scope(self) -> str:
        return describe(self.kind, self.value)

    def in_force(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class InFlight:
    """One call in flight through a kill_switch stage; `killed_by` is set when a switch
    cancels it, so the stage can tell its cancellation from any other. A plain class with
    slots: one is made per call, switches or not."""

    __slots__ = ("_facts", "_call", "task", "killed_by")

    def __init__(self, facts: Callable[[Any], Iterable[Fact]], call: object, task: asyncio.Task[Any] | None) -> None:
        self._facts, self._call, self.task = facts, call, task
        self.killed_by: Switch | None = None

    def facts(self) -> Iterable[Fact]:
        return self._facts(self._call)


@dataclass(slots=True)
class _Index:
    revision: int = 0
    by_scope: dict[Fact, tuple[Switch, ...]] = field(default_factory=dict)
    everything: tuple[Switch, ...] = ()
    isolated: frozenset[tuple[str, str]] = frozenset()
    # Kinds that name a party of the call: routing must avoid killed callees.
    party_kinds: frozenset[int] = frozenset()


class Controls:
    def __init__(self, data_dir: Path | None, wall: Callable[[], float]) -> None:
        self._dir, self._wall = data_dir, wall
        self._index = _Index()
        self.empty = True  # no kill switch in force: the stages skip everything
        self.synced = False  # a set came from the registry or the persisted file
        self.from_registry = asyncio.Event()  # a set came from the registry since start-up
        self._inflight: set[InFlight] = set()
        self._listeners: list[Callable[[frozenset[tuple[str, str]]], None]] = []
        self._unsaved: controls_pb2.ControlsUpdate | None = None
        self._saver: asyncio.Task[None] | None = None

    @property
    def revision(self) -> int:
        return self._index.revision

    @property
    def isolated(self) -> frozenset[tuple[str, str]]:
        return self._index.isolated

    @property
    def kills_callees(self) -> bool:
        """Whether a switch names an instance, agent, version or team (a callee may be killed)."""
        return bool(self._index.party_kinds)

    def on_isolation(self, listener: Callable[[frozenset[tuple[str, str]]], None]) -> None:
        """`listener(isolated (agent, version) pairs)` after every set applied (the catalog's)."""
        self._listeners.append(listener)
        listener(self._index.isolated)

    def load_last(self) -> None:
        """At start-up: enforce the set persisted before the last stop."""
        path = self._path()
        if path is None or not path.exists():
            return
        update = controls_pb2.ControlsUpdate()
        try:
            update.ParseFromString(path.read_bytes())
        except (OSError, DecodeError) as exc:
            log.error("ignoring the persisted controls %s: %s", path, exc)
            return
        self.apply(update, persist=False)
        log.info(
            "enforcing the persisted controls revision %d (%d kill switch(es), %d isolation(s)) until the registry answers",
            update.revision,
            len(update.kill_switches),
            len(update.isolations),
        )

    def apply(self, update: controls_pb2.ControlsUpdate, *, persist: bool = True) -> list[Switch]:
        """Replaces the set in force; cancels the calls in flight that a new switch matches.
        Returns the new switches."""
        old = {s.id for s in self._switches()}
        switches = [_switch(s) for s in update.kill_switches]
        by_scope: dict[Fact, list[Switch]] = {}
        for s in switches:
            if s.kind != ALL:
                by_scope.setdefault((s.kind, s.value), []).append(s)
        self._index = _Index(
            revision=update.revision,
            by_scope={fact: tuple(found) for fact, found in by_scope.items()},
            everything=tuple(s for s in switches if s.kind == ALL),
            isolated=frozenset((i.agent, i.version) for i in update.isolations),
            party_kinds=frozenset(s.kind for s in switches if s.kind in (INSTANCE, AGENT, VERSION, TEAM, ALL)),
        )
        self.empty, self.synced = not switches, True
        new = [s for s in switches if s.id not in old]
        if new:
            log.warning("kill switch(es) engaged: %s", "; ".join(f"{s.id} ({s.scope}): {s.reason}" for s in new))
            self._cancel_matching(new)
        lifted = old - {s.id for s in switches}
        if lifted:
            log.info("kill switch(es) lifted: %s", ", ".join(sorted(lifted)))
        for listener in self._listeners:
            listener(self._index.isolated)
        if persist:
            self._save_soon(update)
            self.from_registry.set()
        return new

    async def flush(self) -> None:
        """Waits until the newest set is on disk (at shutdown)."""
        if self._saver is not None:
            await self._saver

    def matching(self, facts: Iterable[Fact]) -> Switch | None:
        """The first switch in force that matches one of the call's facts; None when none does."""
        index, now = self._index, self._wall()
        for s in index.everything:
            if s.in_force(now):
                return s
        for fact in facts:
            for s in index.by_scope.get(fact, ()):
                if s.in_force(now):
                    return s
        return None

    def track(self, entry: InFlight) -> None:
        self._inflight.add(entry)

    def untrack(self, entry: InFlight) -> None:
        self._inflight.discard(entry)

    def _cancel_matching(self, new: list[Switch]) -> None:
        fresh = _Index(by_scope={}, everything=())
        for s in new:
            if s.kind == ALL:
                fresh.everything += (s,)
            else:
                fresh.by_scope[(s.kind, s.value)] = (*fresh.by_scope.get((s.kind, s.value), ()), s)
        now = self._wall()
        cancelled = 0
        for entry in list(self._inflight):
            if entry.killed_by is not None or entry.task is None:
                continue
            switch = next((s for s in fresh.everything if s.in_force(now)), None)
            if switch is None:
                switch = next(
                    (s for fact in entry.facts() for s in fresh.by_scope.get(fact, ()) if s.in_force(now)), None
                )
            if switch is not None:
                entry.killed_by = switch
                entry.task.cancel(f"kill switch {switch.id}")
                cancelled += 1
        if cancelled:
            log.warning("cancelled %d call(s) in flight", cancelled)

    def in_force(self) -> list[Switch]:
        """The kill switches this sidecar enforces now, by id (the admin port's /status)."""
        now = self._wall()
        return sorted((s for s in self._switches() if s.in_force(now)), key=lambda s: s.id)

    def _switches(self) -> Iterator[Switch]:
        yield from self._index.everything
        for found in self._index.by_scope.values():
            yield from found

    def _path(self) -> Path | None:
        return None if self._dir is None else self._dir / "controls" / LAST_FILE

    def _save_soon(self, update: controls_pb2.ControlsUpdate) -> None:
        """Writes the set in a worker thread, half a second later, off the path to enforcement and
        acknowledgement (the write fsyncs); only the newest set is written when several arrive
        meanwhile. A crash in that half second loses the copy, not the switch: at start-up the
        sidecar waits for the registry's set before serving."""
        self._unsaved = update
        if self._saver is not None and not self._saver.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tools, tests): write at once
            self._unsaved = None
            self._persist(update)
            return
        self._saver = spawn(self._save_newest(), "controls-save")

    async def _save_newest(self) -> None:
        # A moment later: when a switch is engaged, every sidecar on the host works at once to
        # enforce and acknowledge it; the write (and its fsyncs) can wait until that is done.
        await asyncio.sleep(SAVE_DELAY_S)
        while self._unsaved is not None:
            update, self._unsaved = self._unsaved, None
            await asyncio.to_thread(self._persist, update)

    def _persist(self, update: controls_pb2.ControlsUpdate) -> None:
        path = self._path()
        if path is None:
            return
        try:
            if not path.parent.is_dir():
                ensure_private_dir(path.parent)
            write_atomically(path, update.SerializeToString())
        except OSError as exc:
            log.error("could not persist controls revision %d to %s: %s", update.revision, path, exc)


def _switch(message: controls_pb2.KillSwitch) -> Switch:
    expires = message.expires_at.ToMicroseconds() / 1e6 if message.HasField("expires_at") else None
    return Switch(message.id, message.scope_kind, message.scope_value, message.reason, expires)
