"""Shared command line of the demo agents: each agent module builds its `Agent` with it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import meshwarden


def build(description: str, argv: Sequence[str] | None = None) -> meshwarden.Agent:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sidecar", required=True, help="the sidecar's local API")
    parser.add_argument("--listen", default="127.0.0.1:0", help="this agent's callback endpoint")
    parser.add_argument("--version", required=True, help="this agent's semantic version")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return meshwarden.Agent(version=options.version, sidecar=options.sidecar, listen=options.listen)
