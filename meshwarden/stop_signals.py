"""SIGTERM and SIGINT end every meshwarden process the same way: a clean, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for the running loop (call it inside the loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # loops without signal support (Windows)
            loop.add_signal_handler(sig, stop.set)
    return stop
