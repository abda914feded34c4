"""The admin port's /config and /status documents: JSON, complete, free of secrets."""

from __future__ import annotations

import json
from pathlib import Path

from meshwarden.sidecar.config import OPTIONS
from meshwarden.sidecar.inspection import Inspection, config_view, status_view
from meshwarden.sidecar.spool_backlog import Backlog
from tests.unit.sidecar.test_pipeline import runtime


async def test_config_shows_every_option_with_its_origin_and_hides_the_join_token(tmp_path: Path) -> None:
    rt = await runtime(tmp_path, join_token="s3cret-token", default_timeout_s="7")
    doc = json.loads(json.dumps(config_view(rt.config)))
    settings = {s["key"]: s for s in doc["settings"]}
    assert [s["key"] for s in doc["settings"]] == [o.key for o in OPTIONS]
    assert settings["join_token"]["value"] == "(set)" and "s3cret" not in json.dumps(doc)
    assert settings["default_timeout_s"] == {
        "key": "default_timeout_s",
        "flag": "--default-timeout-s",
        "value": "7",
        "origin": "flag --default-timeout-s",
    }
    assert settings["keepalive_s"]["origin"] == "default" and settings["admin_listen"]["value"] == "127.0.0.1:9901"


async def test_status_is_json_and_says_what_the_sidecar_holds(tmp_path: Path) -> None:
    rt = await runtime(tmp_path)
    rt.routes.set("billing.refund", {"2.3.1": 90, "2.4.0": 10})
    seen = Inspection(rt, rt.local, ("platform-1",), lambda: Backlog(3, 900, 1.0))
    doc = json.loads(json.dumps(status_view(seen)))
    assert doc["bundle"]["active_revision"] == 0 and doc["bundle"]["trusted_key_ids"] == ["platform-1"]
    assert doc["routes"] == {"billing.refund": {"2.3.1": 90, "2.4.0": 10}}
    assert doc["receipts"] == {"backlog": 3, "backlog_bytes": 900, "oldest_started_at": 1.0}
    assert doc["kill_switches"] == [] and doc["catalog"]["synced"] is False
