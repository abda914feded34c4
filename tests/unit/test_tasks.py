"""meshwarden.tasks: a failing loop is logged and restarted with a growing pause, or stops the
process; a loop that ends is logged; stopping the supervisor ends every loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from meshwarden.tasks import Backoff, Supervisor, spawn

QUICK = Backoff(first_s=0.001, max_s=0.004, healthy_after_s=60)


async def test_a_failing_loop_is_logged_and_restarted_until_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    running = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 4:
            raise ValueError(f"failure {len(runs)}")
        running.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(QUICK)
    supervisor.start("flaky", flaky)
    await asyncio.wait_for(running.wait(), 5)
    assert len(runs) == 4 and supervisor.names == ["flaky"]
    pauses = [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
    assert pauses == [f"background task flaky failed; restarting in {s:.1f} s" for s in (0.001, 0.002, 0.004)]
    assert all(r.exc_info is not None for r in caplog.records if "restarting" in r.getMessage())
    await supervisor.stop()
    assert supervisor.names == []


async def test_a_loop_that_must_not_fail_stops_the_process(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("disk gone")

    supervisor = Supervisor(QUICK)
    supervisor.start("vital", broken, on_failure="stop")
    await asyncio.wait_for(supervisor.fatal.wait(), 5)
    assert any("vital failed; stopping the process" in r.getMessage() for r in caplog.records)
    await supervisor.stop()


async def test_a_loop_that_returns_is_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def short() -> None:
        return

    supervisor = Supervisor(QUICK)
    task = supervisor.start("short", short)
    await asyncio.wait_for(task, 5)
    assert any("short ended by itself" in r.getMessage() for r in caplog.records)
    await supervisor.stop()


async def test_a_one_shot_task_that_fails_is_logged_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    async def write() -> None:
        raise OSError("disk full")

    task = spawn(write(), "controls-save")
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next turn
    [record] = [r for r in caplog.records if r.getMessage() == "task controls-save failed"]
    assert record.exc_info is not None and "disk full" in str(record.exc_info[1])
