"""The SDK gives every call its own idempotency key unless told otherwise, and a handler's
nested calls derive theirs from the parent's key, so a replayed parent replays its children."""

from __future__ import annotations

from typing import Any

import pytest

from meshwarden.agent import CallContext
from meshwarden.client import request


def test_each_call_gets_a_fresh_key_unless_told_otherwise() -> None:
    a, b = (request("echo", {}) for _ in range(2))
    assert a.idempotency_key and b.idempotency_key and a.idempotency_key != b.idempotency_key
    assert request("echo", {}, idempotent=False).idempotency_key == ""
    assert request("echo", {}, idempotency_key="mine").idempotency_key == "mine"


def context(key: str) -> CallContext:
    return CallContext("c1", "plan", "caller", "", "", "", 1, None, None, "", None, key)  # type: ignore[arg-type]


def keys(ctx: CallContext, *capabilities: str) -> list[Any]:
    return [ctx._nested(cap, {}).get("idempotency_key") for cap in capabilities]


def test_nested_keys_are_derived_from_the_parent_key_and_replay_the_same() -> None:
    first = keys(context("parent-1"), "echo", "echo", "billing.refund")
    assert len(set(first)) == 3
    assert keys(context("parent-1"), "echo", "echo", "billing.refund") == first  # a retried parent
    assert keys(context("parent-2"), "echo") != first[:1]
    assert keys(context(""), "echo") == [None]  # no parent key: the SDK makes a fresh one


def test_a_misspelt_option_is_an_error_not_ignored() -> None:
    with pytest.raises(TypeError, match="idempotency_kay"):
        request("echo", {}, idempotency_kay="mine")  # type: ignore[call-arg]
