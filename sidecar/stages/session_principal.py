"""Carry who a session was started for, and refuse an agent's attempt to change it.

Outbound (the local agent's calls, every kind): a call of a session this sidecar knows carries
the session's principal whatever the agent sent; a different one is refused (PrincipalMismatch)
and the receipt keeps what was claimed. A call of a session it does not know yet starts it
here: the agent's on_behalf_of, if any, is learned (source "agent"). Inbound (a peer sidecar's
call): the envelope's principal is learned for the session (source "peer"), so the calls this
agent makes while handling it carry it too. What was decided goes in the call's record for
the receipt, and in the call itself for the peer hop (sidecar.wire.peer_call).

The session's free labels (meshwarden.session_labels) go the same way, first wins; labels an
agent sends for a session that already has some are ignored, not refused: they describe what
the session works on, and the entry point's say that.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from meshwarden.errors import PrincipalMismatch
from meshwarden.identifiers import shown
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.session_principals import SessionLabels, SessionPrincipals


class SessionPrincipal:
    def __init__(
        self,
        next: Handler,
        known: SessionPrincipals,
        labels: SessionLabels,
        direction: Literal["outbound", "inbound"],
    ) -> None:
        self._next, self._known, self._labels, self._direction = next, known, labels, direction

    async def __call__(self, call: Call) -> Reply:
        call = self._with_labels(call)
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

    def _with_labels(self, call: Call) -> Call:
        """`call` carrying its session's first labels (learned from it when it has the first)."""
        labels = self._labels.learn(call.session_id, call.session_labels) if call.session_id else call.session_labels
        call.record.session_labels = labels
        return call if labels == call.session_labels else dataclasses.replace(call, session_labels=labels)


def outbound(known: SessionPrincipals, labels: SessionLabels) -> Layer:
    return lambda next: SessionPrincipal(next, known, labels, "outbound")


def inbound(known: SessionPrincipals, labels: SessionLabels) -> Layer:
    return lambda next: SessionPrincipal(next, known, labels, "inbound")
