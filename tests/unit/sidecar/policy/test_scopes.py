"""sidecar.policy.scopes: which policies' scopes match a principal or resource name."""

from __future__ import annotations

import cedarpy

from meshwarden.sidecar.policy.scopes import Hierarchy, ScopeIndex, Uid, action_may_match

POLICIES = """
permit (principal, action, resource);
permit (principal == Agent::"kb", action, resource);
permit (principal in Team::"support", action, resource);
permit (principal in Org::"acme", action, resource);
permit (principal is Agent, action, resource);
permit (principal is Agent in Team::"finance", action, resource);
permit (principal == Team::"support", action, resource);
permit (principal is Capability, action, resource);
permit (principal in Agent::"frontdesk", action, resource);
"""


def test_principal_scopes_match_by_name_and_ancestry() -> None:
    tree = cedarpy.PolicySet.from_str(POLICIES).to_pst()
    hierarchy = Hierarchy(
        {
            Uid("Agent", "kb"): [Uid("Team", "knowledge")],
            Uid("Agent", "support"): [Uid("Team", "support")],
            Uid("Agent", "frontdesk"): [Uid("Team", "support")],
            Uid("Team", "support"): [Uid("Org", "acme")],
        }
    )
    index = ScopeIndex("Agent", [p.principal for p in tree.static_policies.values()], hierarchy)
    assert index.matching("kb") == {0, 1, 4}
    assert index.matching("support") == {0, 2, 3, 4}
    assert index.matching("frontdesk") == {0, 2, 3, 4, 8}
    assert index.matching("stranger") == index.unscoped == {0, 4}
    assert index.named() == {"kb", "frontdesk"}


def test_only_other_actions_are_ruled_out() -> None:
    text = 'permit (principal, action == Action::"call", resource);\npermit (principal, action == Action::"view", resource);\npermit (principal, action in [Action::"view"], resource);\npermit (principal, action, resource);'
    actions = [p.action for p in cedarpy.PolicySet.from_str(text).to_pst().static_policies.values()]
    assert [action_may_match(a) for a in actions] == [True, False, True, True]
