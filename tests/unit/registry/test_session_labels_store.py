"""Session labels in the registry: the first receipt's labels are the session's, kept by each
store in the receipts' transaction and filtered through its index (`--label key=value`), and
the same answer from the receipts alone."""

from __future__ import annotations

import pytest

from meshwarden.registry import session_views
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.session_views import SessionFilter
from meshwarden.registry.store import Stores
from meshwarden.registry.store.records import SessionQuery
from meshwarden.v1 import receipts_pb2
from tests.unit.receipt_fixtures import both_sides
from tests.unit.registry.test_session_insights import ship_as_sidecars

API = (("repository", "acme/api"), ("resource", "db-prod"))


def labelled(found: list[receipts_pb2.Receipt], **labels: str) -> list[receipts_pb2.Receipt]:
    for r in found:
        r.session_labels.update(labels)
    return found


def receipts() -> list[receipts_pb2.Receipt]:
    return [
        *labelled(both_sides("a1", "frontdesk", "kb", "kb.search", session="api", at=10.0), **dict(API)),
        # a later call of the same session naming other labels: the first ones stay the session's
        *labelled(both_sides("a2", "kb", "db", "db.read", session="api", at=11.0), repository="other/repo"),
        *labelled(both_sides("b1", "frontdesk", "kb", "kb.search", session="web", at=12.0), repository="acme/web"),
        *both_sides("c1", "frontdesk", "kb", "kb.search", session="plain", at=13.0),
    ]


async def test_each_store_keeps_the_first_labels_and_filters_by_all_of_them(stores: Stores) -> None:
    await ship_as_sidecars(stores, receipts())
    sessions = stores.sessions
    assert sessions is not None

    async def found(*labels: tuple[str, str]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        listed = await sessions.find(SessionQuery(labels=labels, oldest_first=True))
        return [(s.aggregate.session_id, s.principal.labels if s.principal else ()) for s in listed]

    assert await found() == [("api", API), ("web", (("repository", "acme/web"),)), ("plain", ())]
    assert await found(("repository", "acme/api")) == [("api", API)]
    assert await found(("repository", "acme/api"), ("resource", "db-prod")) == [("api", API)]
    assert await found(("repository", "acme/api"), ("resource", "db-test")) == []
    assert await found(("repository", "other/repo")) == []


def test_the_receipts_alone_give_the_same_labels_and_filter() -> None:
    wanted = SessionFilter.from_proto(receipts_pb2.ListSessionsRequest(labels={"repository": "acme/api"}))
    listed = session_views.list_sessions(receipts(), {}, wanted)
    assert [(s.session_id, dict(s.labels)) for s in listed] == [("api", dict(API))]


def test_a_bad_label_filter_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInput, match="not a label key"):
        SessionFilter.from_proto(receipts_pb2.ListSessionsRequest(labels={"Repo": "x"}))
