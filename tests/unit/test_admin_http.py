"""meshwarden.admin_http on a real loopback port: metrics, liveness, readiness, a busy port;
and the admin-listen settings of both components."""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from meshwarden.addresses import HostPort
from meshwarden.admin_http import AdminBindError, AdminServer
from meshwarden.metrics_registry import LoopStateCollector, MetricsRegistry
from meshwarden.registry import config as registry_config
from meshwarden.sidecar import config as sidecar_config

LOOPBACK_ANY_PORT = HostPort("127.0.0.1", 0)


@pytest.fixture
async def served() -> AsyncIterator[tuple[AdminServer, str, list[str]]]:
    registry = MetricsRegistry()
    Counter("meshwarden_test_things", "Things counted", registry=registry).inc(3)
    not_ready = ["no policy bundle is active yet"]
    server = AdminServer("sidecar", registry, lambda: not_ready[0] if not_ready else "")
    bound = await server.start(LOOPBACK_ANY_PORT)
    try:
        yield server, f"http://{bound}", not_ready
    finally:
        await server.stop()


async def get(url: str, accept: str = "") -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_in_prometheus_text_and_openmetrics(served: tuple[AdminServer, str, list[str]]) -> None:
    _, base, _ = served
    status, content_type, body = await get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "meshwarden_test_things_total 3.0" in body
    _, content_type, body = await get(f"{base}/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text") and body.rstrip().endswith("# EOF")


async def test_readyz_says_why_until_ready_and_healthz_is_always_ok(
    served: tuple[AdminServer, str, list[str]],
) -> None:
    _, base, not_ready = served
    assert (await get(f"{base}/healthz"))[::2] == (200, "ok\n")
    assert (await get(f"{base}/readyz"))[::2] == (503, "not ready: no policy bundle is active yet\n")
    not_ready.clear()
    assert (await get(f"{base}/readyz"))[::2] == (200, "ready\n")


async def test_a_busy_port_is_an_error_that_says_what_to_do(served: tuple[AdminServer, str, list[str]]) -> None:
    _, base, _ = served
    taken = HostPort("127.0.0.1", int(base.rsplit(":", 1)[1]))
    with pytest.raises(AdminBindError, match=r"127\.0\.0\.1:\d+ for the registry's admin HTTP port.*--admin-listen"):
        await AdminServer("registry", MetricsRegistry(), lambda: "").start(taken)


def test_admin_listen_defaults_and_off() -> None:
    sidecar = sidecar_config.load(argparse.Namespace(agent="a", data_dir="/x"), {})
    assert sidecar.admin_listen == HostPort("127.0.0.1", 9901)
    off = sidecar_config.load(argparse.Namespace(agent="a", data_dir="/x"), {"MESHWARDEN_SIDECAR_ADMIN_LISTEN": "off"})
    assert off.admin_listen is None
    registry = registry_config.load(argparse.Namespace(), {})
    assert registry.admin_listen == HostPort("127.0.0.1", 9900)
    assert registry_config.load(argparse.Namespace(admin_listen="127.0.0.1:0"), {}).admin_listen == LOOPBACK_ANY_PORT


async def test_metrics_show_how_long_the_event_loop_was_held(served: tuple[AdminServer, str, list[str]]) -> None:
    _, base, _ = served
    await asyncio.sleep(0.12)  # the probe has woken at least once
    time.sleep(0.3)  # noqa: ASYNC251 - on purpose: this is what the lag metric must catch
    await asyncio.sleep(0.12)
    _, _, body = await get(f"{base}/metrics")
    worst = float(re.search(r"^meshwarden_event_loop_lag_max_seconds (\S+)$", body, re.M).group(1))  # type: ignore[union-attr]
    assert worst >= 0.25
    count = float(re.search(r"^meshwarden_event_loop_lag_seconds_count (\S+)$", body, re.M).group(1))  # type: ignore[union-attr]
    assert count >= 2
    _, _, again = await get(f"{base}/metrics")  # the worst is per scrape
    assert float(re.search(r"^meshwarden_event_loop_lag_max_seconds (\S+)$", again, re.M).group(1)) < 0.25  # type: ignore[union-attr]


class _Recording(Collector):
    """Collects one gauge, remembering the thread that collected it."""

    def __init__(self, name: str) -> None:
        self.name, self.threads = name, list[threading.Thread]()

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.current_thread())
        yield GaugeMetricFamily(self.name, "A gauge for the test", value=1)


class _RecordingLoopState(_Recording, LoopStateCollector):
    pass


async def test_metrics_are_collected_in_a_worker_but_what_the_loop_owns() -> None:
    registry = MetricsRegistry()
    loop_state, other = _RecordingLoopState("meshwarden_test_loop_state"), _Recording("meshwarden_test_other")
    registry.register(loop_state)
    registry.register(other)
    server = AdminServer("sidecar", registry, lambda: "")
    bound = await server.start(LOOPBACK_ANY_PORT)
    try:
        _, _, body = await get(f"http://{bound}/metrics")
    finally:
        await server.stop()
    assert "meshwarden_test_loop_state 1.0" in body and "meshwarden_test_other 1.0" in body
    assert loop_state.threads == [threading.main_thread()]
    assert len(other.threads) == 1 and other.threads[0] is not threading.main_thread()
