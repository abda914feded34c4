"""The stage order in sidecar/pipeline.py is the order README.md documents."""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from meshwarden.clock import SystemClock
from meshwarden.identity.svid import Svid
from meshwarden.sidecar import config, pipeline
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Handler
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.receipt_spool import ReceiptSpool
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.stages.breaker import BreakerBoard

README = Path(__file__).parents[3] / "README.md"


def documented(direction: str) -> list[str]:
    text = README.read_text()
    block = text.split(f"<!-- pipeline:{direction} -->", 1)[1].split("<!-- /pipeline -->", 1)[0]
    return re.findall(r"^\d+\. `([a-z_]+)`", block, flags=re.MULTILINE)


def stage_names(handler: Handler) -> list[str]:
    names = []
    current: object = handler
    while current is not None:
        names.append(type(current).__module__.rsplit(".", 1)[-1])
        current = getattr(current, "_next", None)
    return names


def no_svid() -> Svid:
    raise AssertionError("building the pipeline must not need an SVID")


async def runtime(tmp_path: Path) -> Runtime:
    cfg = config.load(argparse.Namespace(agent="a", data_dir="/nonexistent"), {})
    return Runtime(
        config=cfg,
        clock=SystemClock(),
        rng=random.Random(1),
        catalog=Catalog(),
        schemas=SchemaCache(),
        local=LocalAgent("a", "a-1", "127.0.0.1:1", ""),
        peer_channels=PeerChannels([], no_svid),
        agent_app=AgentApp("127.0.0.1:1", []),
        policy=PolicyHolder(),
        breakers=BreakerBoard(),
        receipts=ReceiptSpool.open(tmp_path, instance_id="a-1", spiffe_id=""),
    )


async def test_outbound_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.outbound(await runtime(tmp_path))) == documented("outbound")
    assert documented("outbound")[-1] == "peer"


async def test_inbound_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.inbound(await runtime(tmp_path))) == documented("inbound")
    assert documented("inbound")[-1] == "deliver"


async def test_model_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.model(await runtime(tmp_path))) == documented("model")
    assert documented("model")[-1] == "provider"
