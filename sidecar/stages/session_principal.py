"""Carry who a session was started for, and refuse an agent's attempt to change it.

Outbound (the local agent's calls, every kind): a call of a session this sidecar knows carries
the session's principal whatever the agent sent; a different one is refused (PrincipalMismatch)
and the receipt keeps what was claimed. A call of a session it does not know yet starts it
here: the agent's on_behalf_of, if any, is learned (source "agent"). Inbound (a peer sidecar's
call): the envelope's principal is learned for the session (source "peer"), so the calls this
agent makes while handling it carry it too. What was decided goes in the call's record for
the receipt, and in the call itself for the peer hop (sidecar.wire.peer_call).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from meshwarden.errors import PrincipalMismatch
from meshwarden.identifiers import shown
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.session_principals import SessionPrincipals


class SessionPrincipal:
    def __init__(self, next: Handler, known: SessionPrincipals, direction: Literal["outbound", "inbound"]) -> None:
        self._next, self._known, self._direction = next, known, direction

    async def __call__(self, call: Call) -> Reply:
        record, claimed = call.record, call.on_behalf_of
        if self._direction == "inbound":
            record.on_behalf_of, record.on_behalf_of_source = claimed, "peer" if claimed else ""
            self._known.learn(call.session_id, claimed)
            return await self._next(call)
        known = self._known.get(call.session_id) if call.session_id else ""
        if known and claimed and claimed != known:
            record.on_behalf_of, record.on_behalf_of_source, record.on_behalf_of_refused = known, "session", claimed
            raise PrincipalMismatch(
                f"session {shown(call.session_id)} was started for {shown(known)}; {call.caller.agent} may not "
                f"call for {shown(claimed)} in it (leave on_behalf_of empty below the entry point, or start "
                "a new session)",
                session_id=call.session_id,
                started_for=known,
            )
        if known:
            record.on_behalf_of, record.on_behalf_of_source = known, "session"
        elif claimed:
            self._known.learn(call.session_id, claimed)  # no session id: it is this call's alone
            record.on_behalf_of, record.on_behalf_of_source = claimed, "agent"
        principal = record.on_behalf_of
        return await self._next(call if principal == claimed else dataclasses.replace(call, on_behalf_of=principal))


def outbound(known: SessionPrincipals) -> Layer:
    return lambda next: SessionPrincipal(next, known, "outbound")


def inbound(known: SessionPrincipals) -> Layer:
    return lambda next: SessionPrincipal(next, known, "inbound")
