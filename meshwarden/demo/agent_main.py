"""Shared command line of the demo agents: each agent module builds its `Agent` with it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

import meshwarden
from meshwarden.demo.pricing import Models


@dataclass(frozen=True)
class Outage:
    """The demo's failing instance: while `flag_file` exists, its calls fail with UNAVAILABLE,
    as an agent does when its model provider is down. A file, so the demo can start and end
    the outage of a running process without a back door in the agent's API."""

    flag_file: Path | None

    def check(self) -> None:
        if self.flag_file is not None and self.flag_file.exists():
            raise meshwarden.HandlerError(
                "the model provider is unreachable from this instance", grpc.StatusCode.UNAVAILABLE
            )


def build(description: str, argv: Sequence[str] | None = None) -> tuple[meshwarden.Agent, Outage, Models]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sidecar", required=True, help="the sidecar's local API")
    parser.add_argument("--listen", default="127.0.0.1:0", help="this agent's callback endpoint")
    parser.add_argument("--version", required=True, help="this agent's semantic version")
    parser.add_argument(
        "--outage-file", type=Path, default=None, help="while this file exists, every call fails with UNAVAILABLE"
    )
    parser.add_argument(
        "--gateway",
        default=None,
        help="the sidecar's model gateway, HOST:PORT; without it the agent makes no model calls "
        "(as when the tests run it only for its capability)",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = meshwarden.Agent(
        version=options.version, sidecar=options.sidecar, listen=options.listen, gateway=options.gateway
    )
    return agent, Outage(options.outage_file), Models(enabled=options.gateway is not None)
