"""A Workload API socket path longer than a unix socket allows is refused with a message that
says what to do, not gRPC's bare "Failed to bind" and a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwarden.sidecar import workload_api_server


async def test_a_path_over_107_bytes_names_itself_and_the_fix(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / "identity" / "workload.sock"
    with pytest.raises(workload_api_server.SocketPathTooLong) as info:
        await workload_api_server.serve(None, deep)  # type: ignore[arg-type]  # refused before it is used
    assert str(deep) in str(info.value) and "shorter --data-dir" in str(info.value)
    assert not deep.parent.exists()  # nothing made
