from __future__ import annotations

import pytest

from meshwarden.identity import join_token
from meshwarden.identity.spiffe_ids import IdentityError, agent_id, dns_name, parse, registry_id


def test_dns_name_is_the_reversed_path_under_the_trust_domain() -> None:
    assert dns_name(agent_id("meshwarden.local", "billing")) == "billing.agent.meshwarden.local"
    assert dns_name(registry_id("prod.example.com")) == "registry.meshwarden.prod.example.com"


def test_distinct_identities_have_distinct_dns_names() -> None:
    names = {dns_name(agent_id("td.local", n)) for n in ["a", "b", "registry"]} | {dns_name(registry_id("td.local"))}
    assert len(names) == 4


def test_parse_agent_and_registry() -> None:
    who = parse("spiffe://meshwarden.local/agent/billing", "meshwarden.local")
    assert (who.kind, who.name) == ("agent", "billing")
    assert parse(registry_id("meshwarden.local"), "meshwarden.local").kind == "registry"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("spiffe://other.domain/agent/billing", "trust domain 'other.domain'"),
        ("spiffe://meshwarden.local/agent/Bad_Name", "DNS labels"),
        ("spiffe://meshwarden.local/workload/billing", "not a mesh identity"),
        ("spiffe://meshwarden.local/agent/billing/extra", "not a mesh identity"),
        ("https://meshwarden.local/agent/billing", "not a SPIFFE ID"),
        ("spiffe://MESH/agent/x", "trust domain must be"),
        ("spiffe://meshwarden.local", "empty"),
    ],
)
def test_parse_refuses_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        parse(uri, "meshwarden.local")


def test_join_token_round_trip_and_pin() -> None:
    token = join_token.make("sha256:" + "ab" * 32)
    text = join_token.render(token)
    assert join_token.parse(text) == token and join_token.parse(text).ca_pin == "sha256:" + "ab" * 32
    assert token.secret not in repr(token)  # never printed by accident


@pytest.mark.parametrize("text", ["", "mwj1.x.y.z", "mwj2." + "0" * 16 + "." + "a" * 43 + "." + "b" * 64])
def test_malformed_join_token_says_how_to_get_one(text: str) -> None:
    with pytest.raises(join_token.JoinTokenError, match="meshwarden identity token create"):
        join_token.parse(text)
