"""The registry package exports exactly the names in __all__, and each one exists."""

from __future__ import annotations

from meshwarden import registry


def test_every_exported_name_exists() -> None:
    missing = [name for name in registry.__all__ if not hasattr(registry, name)]
    assert missing == []


def test_all_has_no_duplicates() -> None:
    assert len(set(registry.__all__)) == len(registry.__all__)


def test_public_modules_name_what_they_export() -> None:
    exported = {name for name in dir(registry) if not name.startswith("_")}
    modules = {
        "api",
        "replicas",
        "singletons",
        "store_migration",
        "agent_activity",
        "app",
        "approval_store",
        "approvals",
        "audit",
        "authz",
        "budgets",
        "bundles",
        "catalog",
        "config",
        "console",
        "control_acks",
        "controls",
        "enrolment_extension",
        "errors",
        "health_reports",
        "issuer",
        "join_tokens",
        "leases",
        "metrics",
        "model",
        "operators",
        "outcomes",
        "own_svid",
        "private_files",
        "receipt_chain",
        "receipt_sides",
        "receipt_signatures",
        "reporter_ownership",
        "receipt_verification",
        "receipts",
        "rescue",
        "routes",
        "session_access",
        "session_aggregates",
        "session_changes",
        "session_principal",
        "session_queries",
        "session_signals",
        "session_suspects",
        "session_views",
        "change_tests",
        "call_facts",
        "change_queries",
        "keyset",
        "store",
        "task_calls",
        "task_holders",
        "task_input",
        "task_key",
        "task_queue",
        "tool_ledger",
        "validation",
        "watch_hub",
        "wire",
    }
    assert exported - modules == set(registry.__all__)
