"""deploy/prometheus and deploy/grafana: the alert rules pass promtool's checks and its unit
tests (each alert fires on the series meant to fire it), and every dashboard query is PromQL
promtool accepts. That each metric they name exists is checked against real admin ports in
tests/integration/test_telemetry.py (`referenced_metrics`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.system_tools import require_program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
METRIC = re.compile(r"\bmeshwarden_[a-z_]+")


def referenced_metrics() -> set[str]:
    """Every meshwarden metric name the alert rules and dashboards query."""
    texts = [RULES.read_text()] + [path.read_text() for path in DASHBOARDS]
    return {name for text in texts for name in METRIC.findall(text)}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = require_program("promtool", "prometheus")
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def test_alert_rules_pass_promtool_check_and_its_unit_tests() -> None:
    checked = _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts_test.yaml", cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_exercised_by_the_promtool_unit_tests() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((RULES.parent / "alerts_test.yaml").read_text())["tests"]
    exercised = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    # The unit tests cover the alerts whose expressions join or divide series; the rest are one
    # comparison each, which `promtool check rules` parses.
    assert exercised <= alerts
    assert {"MeshwardenSidecarWithoutPolicy", "MeshwardenSidecarBundleBehind", "MeshwardenCallErrorRate"} <= exercised


def test_dashboard_queries_are_promql_that_promtool_accepts(tmp_path: Path) -> None:
    assert DASHBOARDS, "deploy/grafana holds no dashboard"
    records = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                # Grafana's own variable; any range is valid PromQL in its place.
                expr = target["expr"].replace("$__rate_interval", "5m")
                records.append({"record": f"dashboard:{panel['id']}:{target['refId']}", "expr": expr})
    rules = tmp_path / "dashboard_rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = _promtool("check", "rules", rules.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
