"""The console's views and its writes, as aiohttp handlers: each reads through
registry.console.reads (or acts through registry.console.actions) and renders its template.

Query parameters and form fields come from outside: each is cut to MAX_FIELD_CHARS and
checked against what it may be before use; a domain error (a bad field, an approval no
longer pending, a switch already lifted) becomes a notice on the page with the domain's own
message, and the status the same mistake gets from the RPC (400, 404, 409).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from meshwarden.control_scopes import KIND_BY_NAME, KIND_NAMES
from meshwarden.registry.authz import Caller
from meshwarden.registry.console.actions import Actions, effect_text
from meshwarden.registry.console.guard import login_of
from meshwarden.registry.console.logins import Login
from meshwarden.registry.console.reads import SESSION_WINDOW_DEFAULT, SESSION_WINDOWS_S, WINDOWS_S, Reads
from meshwarden.registry.console.render import page
from meshwarden.registry.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    RegistryError,
    UnknownControl,
    UnknownSession,
)
from meshwarden.registry.session_views import COST_KEYS, STATES
from meshwarden.registry.task_queue import ALLOWED, state_name

MAX_FIELD_CHARS: Final = 256
MAX_REASON_CHARS: Final = 1000
VIEWS: Final = (
    ("/map", "Map"),
    ("/sessions", "Sessions"),
    ("/costs", "Costs"),
    ("/approvals", "Approvals"),
    ("/kills", "Kill switches"),
    ("/tasks", "Tasks"),
    ("/bundles", "Bundles"),
    ("/audit", "Audit log"),
)
TASK_STATES: Final = {state_name(s): s for s in ALLOWED}
SESSION_STATES: Final = STATES  # "": any
SESSION_ORDERS: Final = ("newest", "oldest")  # oldest: the longest idle first (stuck work)
_STATUS: Final[tuple[tuple[type[RegistryError], int], ...]] = (
    (InvalidInput, 400),
    (UnknownControl, 404),
    (UnknownSession, 404),
    (Conflict, 409),
    (PermissionDenied, 403),
)


def reader(login: Login) -> Caller:
    """The caller the registry's queries see for a console login: both roles may look at
    everything an operator may (sessions, costs); writes use `operator`."""
    return Caller(None, 0.0, True, False, "console", operator_id=login.actor, claimed_user=_claimed(login))


def operator(login: Login) -> Caller:
    if not login.may_act:  # the guard refused the write already; this keeps the two honest
        raise PermissionDenied(f"{login.actor} is the read-only viewer token")
    return reader(login)


def _claimed(login: Login) -> str:
    return f"{login.user} (console)" if login.user else "(console)"


def status_of(error: RegistryError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


class Pages:
    def __init__(self, env: jinja2.Environment, reads: Reads, actions: Actions) -> None:
        self._env, self._reads, self._actions = env, reads, actions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.home),
            web.get("/map", self.map),
            web.get("/sessions", self.sessions),
            web.get("/sessions/{session_id}", self.session),
            web.get("/costs", self.costs),
            web.get("/approvals", self.approvals),
            web.post("/approvals/{approval_id}", self.decide),
            web.get("/kills", self.kills),
            web.post("/kills", self.kill),
            web.post("/kills/{switch_id}/lift", self.lift),
            web.get("/tasks", self.tasks),
            web.get("/bundles", self.bundles),
            web.get("/audit", self.audit),
        ]

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/map")

    async def map(self, request: web.Request) -> web.Response:
        window = _choice(request, "window", WINDOWS_S, "5m")
        agent = _query(request, "agent")
        view = await self._reads.map(window=window, after=_query(request, "after"), agent=agent)
        values = {"view": view, "window": window, "windows": list(WINDOWS_S), "agent": agent}
        return self._page(request, "map.html", values)

    async def sessions(self, request: web.Request) -> web.Response:
        login = login_of(request)
        filters = {name: _query(request, name) for name in ("agent", "team", "workflow")}
        state = _choice(request, "state", dict.fromkeys(SESSION_STATES, 0), "")
        order = _choice(request, "order", dict.fromkeys(SESSION_ORDERS, 0), "newest")
        window = _choice(request, "window", SESSION_WINDOWS_S, SESSION_WINDOW_DEFAULT)
        try:
            view = await self._reads.sessions(
                reader(login), state=state, window=window, order=order, cursor=_query(request, "cursor"), **filters
            )
        except RegistryError as exc:
            return self._problem(request, exc)
        values = {
            "view": view,
            "state": state,
            "states": SESSION_STATES,
            "order": order,
            "window": window,
            "windows": list(SESSION_WINDOWS_S),
            **filters,
        }
        return self._page(request, "sessions.html", values)

    async def session(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"][:MAX_FIELD_CHARS]
        try:
            view = await self._reads.session(reader(login_of(request)), session_id)
        except UnknownSession as exc:  # perhaps not yet: receipts arrive in batches, and the page keeps asking
            values = {"view": None, "session_id": session_id, "problem": str(exc)}
            return self._page(request, "session.html", values, status=404)
        except RegistryError as exc:
            return self._problem(request, exc)
        return self._page(request, "session.html", {"view": view, "session_id": session_id})

    async def costs(self, request: web.Request) -> web.Response:
        by = _choice(request, "by", COST_KEYS, "agent")
        window = _choice(request, "window", SESSION_WINDOWS_S, SESSION_WINDOW_DEFAULT)
        view = await self._reads.costs(reader(login_of(request)), by=by, window=window)
        values = {"view": view, "by": by, "keys": list(COST_KEYS), "window": window, "windows": list(SESSION_WINDOWS_S)}
        return self._page(request, "costs.html", values)

    async def approvals(self, request: web.Request) -> web.Response:
        view = await self._reads.approvals(_query(request, "after"))
        return self._page(
            request, "approvals.html", {"pending": view.pending, "recent": view.recent, "next_after": view.next_after}
        )

    async def decide(self, request: web.Request) -> web.StreamResponse:
        login = login_of(request)
        form = await request.post()
        approval_id = request.match_info["approval_id"][:MAX_FIELD_CHARS]
        decision = str(form.get("decision", ""))
        if decision not in ("approve", "deny"):
            raise web.HTTPBadRequest(text="decision must be approve or deny")
        try:
            decided = await self._actions.decide(approval_id, decision == "approve", _reason(form), operator(login))
        except RegistryError as exc:
            login.notices.append(f"Approval {approval_id}: {exc}")
        else:
            login.notices.append(f"Approval {decided.id} {decided.state}: {decided.agent} -> {decided.capability}.")
        raise web.HTTPSeeOther("/approvals")

    async def kills(self, request: web.Request) -> web.Response:
        controls = await self._reads.controls()
        stored = await self._reads.kill_effects()  # however engaged: this page, the CLI, another replica
        effects = {switch_id: str(effect) for switch_id, effect in self._actions.effects.items()}
        effects.update({switch_id: effect_text(e) for switch_id, e in stored.items()})
        values = {"controls": controls, "kinds": list(KIND_BY_NAME), "effects": effects}
        return self._page(request, "kills.html", values)

    async def kill(self, request: web.Request) -> web.StreamResponse:
        login = login_of(request)
        form = await request.post()
        kind = KIND_BY_NAME.get(str(form.get("kind", "")))
        ttl = str(form.get("ttl_s", "")).strip() or "0"
        if kind is None or not ttl.isdigit():
            raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(KIND_NAMES.values())}; ttl_s whole seconds")
        value = str(form.get("value", ""))[:MAX_FIELD_CHARS].strip()
        try:
            effect = await self._actions.kill(kind, value, _reason(form), int(ttl), operator(login))
        except RegistryError as exc:
            login.notices.append(f"Kill switch not engaged: {exc}")
        else:
            login.notices.append(f"Kill switch {effect.switch_id} on {effect.scope} engaged: {effect}.")
        raise web.HTTPSeeOther("/kills")

    async def lift(self, request: web.Request) -> web.StreamResponse:
        login = login_of(request)
        form = await request.post()
        switch_id = request.match_info["switch_id"][:MAX_FIELD_CHARS]
        try:
            effect = await self._actions.lift(switch_id, _reason(form), operator(login))
        except RegistryError as exc:
            login.notices.append(f"Kill switch {switch_id} not lifted: {exc}")
        else:
            login.notices.append(f"Kill switch {effect.switch_id} on {effect.scope} lifted: {effect}.")
        raise web.HTTPSeeOther("/kills")

    async def tasks(self, request: web.Request) -> web.Response:
        state = _choice(request, "state", {"": 0, **TASK_STATES}, "")
        view = await self._reads.tasks([TASK_STATES[state]] if state else [], _query(request, "after"))
        values = {
            "tasks": view.tasks,
            "next_after": view.next_after,
            "state": state,
            "states": list(TASK_STATES),
            "state_name": state_name,
        }
        return self._page(request, "tasks.html", values)

    async def bundles(self, request: web.Request) -> web.Response:
        return self._page(request, "bundles.html", {"view": await self._reads.bundles(_query(request, "after"))})

    async def audit(self, request: web.Request) -> web.Response:
        before = _query(request, "before")
        view = await self._reads.audit(int(before) if before.isdigit() else 0)
        return self._page(request, "audit.html", {"view": view})

    def _page(self, request: web.Request, template: str, values: dict[str, Any], *, status: int = 200) -> web.Response:
        return page(self._env, request, template, login_of(request), {"views": VIEWS, **values}, status=status)

    def _problem(self, request: web.Request, error: RegistryError) -> web.Response:
        return self._page(request, "problem.html", {"problem": str(error)}, status=status_of(error))


def _query(request: web.Request, name: str) -> str:
    return request.query.get(name, "")[:MAX_FIELD_CHARS].strip()


def _choice(request: web.Request, name: str, allowed: Container[str], default: str) -> str:
    value = _query(request, name)
    return value if value in allowed else default


def _reason(form: MultiDictProxy[str | bytes | bytearray | web.FileField]) -> str:
    return str(form.get("reason", ""))[:MAX_REASON_CHARS]
