"""Who a session was started for: learned where it enters, carried, never changed downstream."""

from __future__ import annotations

import pytest

from meshwarden.errors import PrincipalMismatch
from meshwarden.sidecar.session_principals import SessionLabels, SessionPrincipals
from meshwarden.sidecar.stages import session_principal
from tests.unit.sidecar.fakes import Recorder, call


async def test_the_entry_agents_principal_is_carried_to_later_calls_of_the_session() -> None:
    rec, known = Recorder(), SessionPrincipals()
    stage = session_principal.outbound(known, SessionLabels())(rec)
    first = call(session_id="s-1", on_behalf_of="user:alice")
    await stage(first)
    later = call(session_id="s-1")
    await stage(later)
    assert [c.on_behalf_of for c in rec.calls] == ["user:alice", "user:alice"]
    assert (first.record.on_behalf_of_source, later.record.on_behalf_of_source) == ("agent", "session")


async def test_a_different_principal_for_a_known_session_is_refused_and_recorded() -> None:
    rec, known = Recorder(), SessionPrincipals()
    stage = session_principal.outbound(known, SessionLabels())(rec)
    await stage(call(session_id="s-1", on_behalf_of="user:alice"))
    forged = call(session_id="s-1", on_behalf_of="user:mallory")
    with pytest.raises(PrincipalMismatch) as info:
        await stage(forged)
    assert info.value.started_for == "user:alice" and "user:mallory" in info.value.message
    assert (forged.record.on_behalf_of, forged.record.on_behalf_of_refused) == ("user:alice", "user:mallory")
    assert len(rec.calls) == 1


async def test_a_principal_from_the_calling_sidecar_binds_this_agents_own_calls() -> None:
    known = SessionPrincipals()
    await session_principal.inbound(known, SessionLabels())(Recorder())(call(session_id="s-2", on_behalf_of="svc:nightly"))
    rec = Recorder()
    with pytest.raises(PrincipalMismatch):
        await session_principal.outbound(known, SessionLabels())(rec)(call(session_id="s-2", on_behalf_of="user:root"))
    await session_principal.outbound(known, SessionLabels())(rec)(call(session_id="s-2"))
    assert rec.calls[0].on_behalf_of == "svc:nightly"


async def test_sessions_are_forgotten_after_their_time_to_live_and_beyond_the_bound() -> None:
    now = [0.0]
    known = SessionPrincipals(max_sessions=2, ttl_s=10.0, now=lambda: now[0])
    for n in range(3):
        known.learn(f"s-{n}", f"user:{n}")
    assert (known.get("s-0"), known.get("s-2"), len(known)) == ("", "user:2", 2)
    now[0] = 11.0
    assert known.get("s-2") == ""


async def test_the_first_labels_of_a_session_are_carried_and_later_ones_ignored() -> None:
    rec, labels = Recorder(), SessionLabels()
    stage = session_principal.outbound(SessionPrincipals(), labels)(rec)
    first = call(session_id="s-3", session_labels=(("repository", "acme/api"),))
    await stage(first)
    later = call(session_id="s-3", session_labels=(("repository", "other/repo"),))
    await stage(later)
    await stage(call(session_id="s-4"))
    assert [c.session_labels for c in rec.calls] == [(("repository", "acme/api"),)] * 2 + [()]
    assert later.record.session_labels == (("repository", "acme/api"),)


async def test_labels_from_the_calling_sidecar_go_on_this_agents_own_calls() -> None:
    labels = SessionLabels()
    inbound = session_principal.inbound(SessionPrincipals(), labels)(Recorder())
    await inbound(call(session_id="s-5", session_labels=(("resource", "db-prod"),)))
    rec = Recorder()
    await session_principal.outbound(SessionPrincipals(), labels)(rec)(call(session_id="s-5"))
    assert rec.calls[0].session_labels == (("resource", "db-prod"),)
