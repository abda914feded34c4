"""registry.join_tokens over the real SQLite store: single use, bound to one agent, expiring, and only
a hash of the secret is stored."""

from __future__ import annotations

import pytest

from meshwarden.identity import join_token
from meshwarden.registry.errors import InvalidInput, PermissionDenied
from meshwarden.registry.join_tokens import MAX_TTL_S, JoinTokenRefused, JoinTokens
from meshwarden.registry.store import Stores
from tests.identity_helpers import FakeClock
from tests.unit.registry.conftest import RawSql

PIN = "sha256:" + "ab" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(stores: Stores, clock: FakeClock) -> JoinTokens:
    return JoinTokens(stores.join_tokens, clock, ca_fingerprint=PIN)


async def test_a_token_keeps_the_operator_credential_that_made_it(tokens: JoinTokens) -> None:
    created = await tokens.create("billing", 600, created_by="operator:sha256:0123456789abcdef", claimed_user="ann")
    used = await tokens.consume(created.text, "billing")
    assert (used.token_id, used.agent) == (created.token_id, "billing")
    assert (used.created_by, used.created_by_claim) == ("operator:sha256:0123456789abcdef", "ann")


async def test_a_token_enrols_its_agent_once(tokens: JoinTokens) -> None:
    created = await tokens.create("billing", 600)
    assert join_token.parse(created.text).ca_pin == PIN
    assert (await tokens.consume(created.text, "billing")).token_id == created.token_id
    with pytest.raises(JoinTokenRefused, match=f"{created.token_id} was already used.*single-use"):
        await tokens.consume(created.text, "billing")


async def test_a_token_for_another_agent_is_refused_and_not_burnt(tokens: JoinTokens) -> None:
    created = await tokens.create("billing", 600)
    with pytest.raises(JoinTokenRefused, match="made for agent 'billing', not 'search'"):
        await tokens.consume(created.text, "search")
    await tokens.consume(created.text, "billing")


async def test_an_expired_token_is_refused(tokens: JoinTokens, clock: FakeClock) -> None:
    created = await tokens.create("billing", 600)
    clock.now += 600
    with pytest.raises(JoinTokenRefused, match="expired at"):
        await tokens.consume(created.text, "billing")


async def test_tampered_foreign_and_malformed_tokens_are_refused(tokens: JoinTokens) -> None:
    created = await tokens.create("billing", 600)
    parsed = join_token.parse(created.text)
    wrong_secret = join_token.render(join_token.ParsedJoinToken(parsed.token_id, "A" * 43, PIN))
    other_registry = join_token.render(
        join_token.ParsedJoinToken(parsed.token_id, parsed.secret, "sha256:" + "cd" * 32)
    )
    unknown = join_token.render(join_token.ParsedJoinToken("0" * 16, parsed.secret, PIN))
    cases = [
        (wrong_secret, "unknown to this registry or its secret does not match"),
        (unknown, "unknown to this registry or its secret does not match"),
        (other_registry, "made by a registry with CA sha256:cdcd"),
        ("mwj1.nope", "not a meshwarden join token"),
    ]
    for text, message in cases:
        with pytest.raises(JoinTokenRefused, match=message):
            await tokens.consume(text, "billing")
    await tokens.consume(created.text, "billing")  # none of that burnt the real one


async def test_refusals_are_permission_denied(tokens: JoinTokens) -> None:
    with pytest.raises(PermissionDenied):
        await tokens.consume("garbage", "billing")


async def test_only_a_hash_of_the_secret_is_stored(tokens: JoinTokens, raw_sql: RawSql) -> None:
    created = await tokens.create("billing", 600)
    secret = join_token.parse(created.text).secret
    stored = raw_sql.rows("SELECT * FROM join_tokens")
    assert len(stored) == 1 and secret not in repr(stored)
    assert "secret" not in repr(created) and created.text not in repr(created)


@pytest.mark.parametrize(
    ("agent", "ttl_s", "field"),
    [("Billing", 600, "agent"), ("billing", 10, "ttl_s"), ("billing", MAX_TTL_S + 1, "ttl_s")],
)
async def test_bad_requests_name_the_field(tokens: JoinTokens, agent: str, ttl_s: int, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await tokens.create(agent, ttl_s)
    assert info.value.field == field


async def test_old_tokens_are_forgotten_after_a_week(tokens: JoinTokens, stores: Stores, clock: FakeClock) -> None:
    old = await tokens.create("billing", 600)
    clock.now += 8 * 24 * 3600
    new = await tokens.create("search", 600)
    assert await stores.join_tokens.get(old.token_id) is None
    kept = await stores.join_tokens.get(new.token_id)
    assert kept is not None and kept.agent == "search"
