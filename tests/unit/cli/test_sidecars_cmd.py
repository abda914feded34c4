"""meshwarden.cli.sidecars_cmd: a page of sidecars merged from the catalog's page and the
bundle reports' page, and the cursor after it."""

from __future__ import annotations

import json

from meshwarden.cli import sidecars_cmd
from meshwarden.cli.mesh_inventory import MeshView
from meshwarden.v1 import catalog_pb2, registry_pb2


def _view(served: list[tuple[str, str]], reported: list[tuple[str, str]], *, more: bool = False) -> MeshView:
    return MeshView(
        registry_pb2.ListInstancesResponse(
            instances=[catalog_pb2.Instance(agent=a, instance_id=i) for a, i in served],
            next_cursor="more" if more else "",
        ),
        registry_pb2.ListBundleStatusResponse(
            sidecars=[registry_pb2.BundleStatus(agent=a, instance_id=i, live=True) for a, i in reported]
        ),
    )


def test_the_first_n_of_both_pages_and_the_cursor_after_the_last() -> None:
    # Pages of 2 from each source: b-2 serves (and reports), a-1 only reports (a pure caller).
    view = _view([("billing", "b-2"), ("search", "s-1")], [("a", "a-1"), ("billing", "b-2")])
    page, cursor = sidecars_cmd.page_of(sidecars_cmd.members(view), view, 2)
    assert [(m.agent, m.role) for m in page] == [("a", "caller"), ("billing", "serves")]
    assert json.loads(cursor) == ["billing", "b-2"]


def test_the_last_page_has_no_cursor_unless_a_source_says_more() -> None:
    view = _view([("billing", "b-2")], [("billing", "b-2")])
    assert sidecars_cmd.page_of(sidecars_cmd.members(view), view, 2)[1] == ""
    assert sidecars_cmd.page_of(sidecars_cmd.members(view), view, 0) == (sidecars_cmd.members(view), "")
    cut = _view([("billing", "b-2")], [], more=True)
    assert json.loads(sidecars_cmd.page_of(sidecars_cmd.members(cut), cut, 1)[1]) == ["billing", "b-2"]
