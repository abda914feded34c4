"""`meshwarden receipts verify`: its flags and how it shows verdicts (the verification itself
runs in the registry: tests/unit/registry/test_receipts.py, tests/integration/test_receipts.py)."""

from __future__ import annotations

import json

from meshwarden.cli import exit_codes
from meshwarden.cli.main import build_parser
from meshwarden.cli.receipts_cmd import render_json, render_table
from meshwarden.v1 import receipts_pb2

INTACT = receipts_pb2.ChainVerdict(sidecar_instance_id="support-1", receipts=64, intact=True)
BROKEN = receipts_pb2.ChainVerdict(
    sidecar_instance_id="billing-7", receipts=61, intact=False, problem="seq 2 missing (removed)"
)


def test_flags() -> None:
    args = build_parser().parse_args(["receipts", "verify", "--sidecar", "billing-7", "--output", "json"])
    assert (args.sidecar, args.output) == ("billing-7", "json")


def test_the_table_names_each_tampered_chain_and_its_seq() -> None:
    text = render_table(receipts_pb2.VerifyReceiptsResponse(intact=False, chains=[BROKEN, INTACT]))
    assert text.splitlines() == [
        "SIDECAR    RECEIPTS  VERDICT",
        "billing-7        61  TAMPERED: seq 2 missing (removed)",
        "support-1        64  intact",
        "1 of 2 chain(s) were altered: see the seqs named above",
    ]
    assert render_table(receipts_pb2.VerifyReceiptsResponse(intact=True, chains=[INTACT])).endswith(
        "all 1 chain(s) intact, 64 receipt(s)"
    )
    assert render_table(receipts_pb2.VerifyReceiptsResponse(intact=True)) == "no receipts stored yet"


def test_json_keeps_every_verdict() -> None:
    report = json.loads(render_json(receipts_pb2.VerifyReceiptsResponse(intact=False, chains=[BROKEN])))
    assert report == {
        "intact": False,
        "chains": [
            {"sidecar_instance_id": "billing-7", "receipts": 61, "intact": False, "problem": "seq 2 missing (removed)"}
        ],
    }


def test_tampering_has_an_exit_code_of_its_own() -> None:
    assert exit_codes.TAMPERED not in (exit_codes.OK, exit_codes.FAILED, exit_codes.USAGE, exit_codes.UNREACHABLE)
