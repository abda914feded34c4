"""registry.receipts, registry.receipt_chain and registry.receipt_verification over the real
SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from meshwarden.identity.svid import Svid
from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, open_sqlite
from meshwarden.v1 import receipts_pb2
from tests.unit.registry.conftest import WITHOUT_JOIN_TOKEN_MAKER, RawSql
from tests.unit.registry.test_catalog import FakeClock

BILLING = "spiffe://mesh.test/agent/billing"
KB = "spiffe://mesh.test/agent/kb"
OTHER = "spiffe://mesh.test/agent/frontdesk"
ISSUER = Issuer.ephemeral("mesh.test", FakeClock())
_SVIDS: dict[str, Svid] = {}


def svid_of(spiffe_id: str) -> Svid:
    if spiffe_id not in _SVIDS:
        _SVIDS[spiffe_id] = ISSUER.issue(spiffe_id, 3600)
    return _SVIDS[spiffe_id]


async def _ship(receipts: Receipts, shipper: str, batch: list[receipts_pb2.Receipt], signer: str = "") -> int:
    """As a sidecar ships: the batch with the chain's head signed by `signer` (the shipper)."""
    last = batch[-1] if batch else receipts_pb2.Receipt()
    head = sign_head(svid_of(signer or shipper), last.sidecar_instance_id, last.seq, last.hash)
    return await receipts.ship(shipper, batch, head)


def chain(
    count: int, *, instance: str = "billing-1", spiffe_id: str = BILLING, start: int = 1, task_id: str = ""
) -> list[receipts_pb2.Receipt]:
    """`count` receipts of one chain from seq `start`, linked as a sidecar links them; every
    fourth made for `task_id` when given."""
    receipts: list[receipts_pb2.Receipt] = []
    prev = "" if start == 1 else f"sha256:{start - 1:064x}"
    for seq in range(start, start + count):
        receipt = receipts_pb2.Receipt(
            sidecar_instance_id=instance,
            sidecar_spiffe_id=spiffe_id,
            seq=seq,
            prev_hash=prev,
            direction="outbound" if seq % 2 else "inbound",
            caller_spiffe_id=spiffe_id if seq % 2 else OTHER,
            caller_agent=_name(spiffe_id) if seq % 2 else _name(OTHER),
            callee_spiffe_id=OTHER if seq % 2 else spiffe_id,
            callee_agent=_name(OTHER) if seq % 2 else _name(spiffe_id),
            call_id=f"call-{seq}",
            session_id=f"s{seq % 3}",
            capability="billing.refund",
            status="OK",
            usage=receipts_pb2.Usage(model="m", cost_micro_usd=seq),
        )
        receipt.started_at.FromSeconds(1000 + seq)
        if task_id and seq % 4 == 0:
            receipt.task_id, receipt.fencing_token = task_id, seq // 4
        receipt.hash = receipt_hash(receipt)
        prev = receipt.hash
        receipts.append(receipt)
    return receipts


def _name(spiffe_id: str) -> str:
    return spiffe_id.rpartition("/")[2]


@pytest.fixture
def receipts(stores: Stores) -> Receipts:
    return Receipts(stores.receipts, FakeClock(), trust_bundle_pem=ISSUER.bundle_pem)


async def test_a_batch_is_stored_and_acknowledged_up_to_its_last_seq(receipts: Receipts) -> None:
    batch = chain(5)
    assert await _ship(receipts, BILLING, batch[:3]) == 3
    assert await _ship(receipts, BILLING, batch[3:]) == 5
    assert await receipts.count() == 5
    head = await receipts.head("billing-1")
    assert head is not None and (head.seq, head.hash, head.sidecar_spiffe_id) == (5, batch[-1].hash, BILLING)
    assert [v.intact for v in await receipts.verify()] == [True]


async def test_a_reshipped_batch_is_acknowledged_again_without_storing_twice(receipts: Receipts) -> None:
    batch = chain(4)
    await _ship(receipts, BILLING, batch[:3])
    assert await _ship(receipts, BILLING, batch) == 4  # 1-3 again, with 4 new
    assert await _ship(receipts, BILLING, batch[:2]) == 4
    assert await receipts.count() == 4


async def test_a_gap_is_refused_naming_the_expected_seq(receipts: Receipts) -> None:
    batch = chain(6)
    await _ship(receipts, BILLING, batch[:2])
    with pytest.raises(Conflict, match="expected seq 3, got seq 5"):
        await _ship(receipts, BILLING, batch[4:])
    assert await receipts.count() == 2


async def test_a_batch_that_does_not_link_to_the_head_is_refused(receipts: Receipts) -> None:
    await _ship(receipts, BILLING, chain(2))
    with pytest.raises(Conflict, match="seq 3 does not link to seq 2"):
        await _ship(receipts, BILLING, chain(1, start=3))  # its prev_hash is made up


async def test_a_receipt_that_differs_from_the_one_held_at_its_seq_is_refused(receipts: Receipts) -> None:
    await _ship(receipts, BILLING, chain(2))
    other = chain(2)
    other[1].status = "PERMISSION_DENIED"
    other[1].hash = receipt_hash(other[1])
    with pytest.raises(Conflict, match="seq 2 was acknowledged before"):
        await _ship(receipts, BILLING, other)


async def test_receipts_of_another_spiffe_id_are_refused(receipts: Receipts) -> None:
    with pytest.raises(PermissionDenied, match=f"written by {BILLING}, and the caller is {KB}"):
        await _ship(receipts, KB, chain(1))
    await _ship(receipts, BILLING, chain(1))
    with pytest.raises(PermissionDenied, match=f"belongs to {BILLING}"):
        await _ship(receipts, KB, chain(1, start=2, spiffe_id=KB))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.ClearField("sidecar_instance_id"), "receipts[0].sidecar_instance_id"),
        (lambda r: setattr(r, "direction", "sideways"), "receipts[0].direction"),
        (lambda r: setattr(r, "status", "EDITED"), "receipts[0].hash"),
    ],
)
async def test_malformed_batches_name_the_field(receipts: Receipts, change: object, field: str) -> None:
    batch = chain(1)
    change(batch[0])  # type: ignore[operator]
    with pytest.raises(InvalidInput) as info:
        await _ship(receipts, BILLING, batch)
    assert info.value.field == field


async def test_an_empty_batch_or_one_with_a_hole_is_invalid(receipts: Receipts) -> None:
    with pytest.raises(InvalidInput, match="is empty"):
        await _ship(receipts, BILLING, [])
    batch = chain(3)
    with pytest.raises(InvalidInput, match="consecutive seqs"):
        await _ship(receipts, BILLING, [batch[0], batch[2]])


async def test_for_session_and_between_read_receipts_in_time_order(receipts: Receipts) -> None:
    await _ship(receipts, BILLING, chain(600))
    await _ship(receipts, KB, chain(2, instance="kb-1", spiffe_id=KB))
    s1 = await receipts.for_session("s1")
    assert [r.seq for r in s1 if r.sidecar_instance_id == "billing-1"] == list(range(1, 601, 3))
    assert [r.started_at.seconds for r in s1] == sorted(r.started_at.seconds for r in s1)
    window = await receipts.between(1001, 1600)
    assert len(window) == 599 + 2  # billing seq 1 to 599, kb seq 1 and 2
    assert [r.started_at.seconds for r in window] == sorted(r.started_at.seconds for r in window)
    assert await receipts.for_session("nobody") == []


async def test_for_task_reads_the_receipts_of_calls_made_for_that_task(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(40, task_id="task-a"))
    await _ship(receipts, KB, chain(8, instance="kb-1", spiffe_id=KB, task_id="task-b"))
    assert [r.seq for r in await receipts.for_task("task-a", 100)] == list(range(4, 41, 4))
    assert [r.seq for r in await receipts.for_task("task-a", 3)] == [4, 8, 12]
    assert [(r.sidecar_instance_id, r.seq) for r in await receipts.for_task("task-b", 100)] == [
        ("kb-1", 4),
        ("kb-1", 8),
    ]
    assert await receipts.for_task("task-c", 100) == []
    # the column is for lookups; what comes back is what the hashed receipt says
    raw_sql("UPDATE receipts SET task_id = 'task-b' WHERE sidecar_instance_id = 'billing-1' AND seq = 5")
    assert [r.sidecar_instance_id for r in await receipts.for_task("task-b", 100)] == ["kb-1", "kb-1"]


async def test_verify_names_an_edited_column(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(5))
    raw_sql("UPDATE receipts SET status = 'PERMISSION_DENIED' WHERE seq = 3")
    [verdict] = await receipts.verify()
    assert not verdict.intact
    assert verdict.problem == "seq 3: column status is 'PERMISSION_DENIED', but the hashed receipt says 'OK' (edited)"


async def test_verify_names_an_edited_receipt_body(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(5))
    edited = chain(5)[3]
    edited.status = "NOT_FOUND"
    raw_sql("UPDATE receipts SET body = ? WHERE seq = 4", edited.SerializeToString(deterministic=True))
    [verdict] = await receipts.verify()
    assert "seq 4: hash does not match its contents (edited)" in verdict.problems


async def test_verify_names_a_removed_row_and_a_truncated_tail(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(8))
    await _ship(receipts, KB, chain(2, instance="kb-1", spiffe_id=KB))
    raw_sql("DELETE FROM receipts WHERE sidecar_instance_id = 'billing-1' AND seq = 4")
    raw_sql("DELETE FROM receipts WHERE sidecar_instance_id = 'billing-1' AND seq >= 7")
    billing, kb = await receipts.verify()
    assert billing.problems == (
        "seq 4 missing (removed)",
        "truncated: the chain ends at seq 6, but its sidecar shipped up to seq 8 (seq 7 to 8 removed)",
    )
    assert kb.intact and kb.receipts == 2
    assert [v.sidecar_instance_id for v in await receipts.verify("kb-1")] == ["kb-1"]


async def test_verify_names_a_rewritten_link(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(3))
    forged = chain(3)[1]
    forged.prev_hash = "sha256:" + "0" * 64
    forged.hash = receipt_hash(forged)  # consistent in itself, but no longer linked
    body = forged.SerializeToString(deterministic=True)
    raw_sql(
        "UPDATE receipts SET body = ?, prev_hash = ?, hash = ? WHERE seq = 2",
        body,
        forged.prev_hash,
        forged.hash,
    )
    [verdict] = await receipts.verify()
    assert "seq 2: does not link to seq 1 (prev_hash differs)" in verdict.problems
    assert "seq 3: does not link to seq 2 (prev_hash differs)" in verdict.problems


async def test_a_version_4_database_gains_the_receipt_tables(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        WITHOUT_JOIN_TOKEN_MAKER + "DROP TABLE receipts; DROP TABLE receipt_chains; PRAGMA user_version = 4;"
    )
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert (
            await _ship(Receipts(stores.receipts, FakeClock(), trust_bundle_pem=ISSUER.bundle_pem), BILLING, chain(1))
            == 1
        )
    finally:
        await stores.close()


async def test_a_receipt_of_a_call_the_shipper_took_no_part_in_is_refused(receipts: Receipts) -> None:
    forged = chain(1)  # outbound: its caller must be BILLING, the shipper
    forged[0].caller_spiffe_id, forged[0].caller_agent = KB, "kb"
    forged[0].hash = receipt_hash(forged[0])
    with pytest.raises(PermissionDenied, match="names kb .* as its caller, but it comes from .*billing"):
        await _ship(receipts, BILLING, forged)
    renamed = chain(1)
    renamed[0].caller_agent = "kb"  # the right SPIFFE ID, another agent's name
    renamed[0].hash = receipt_hash(renamed[0])
    with pytest.raises(PermissionDenied):
        await _ship(receipts, BILLING, renamed)
    assert await receipts.count() == 0


async def test_a_batch_without_its_shippers_signature_is_refused(receipts: Receipts) -> None:
    batch = chain(2)
    with pytest.raises(InvalidInput, match="head is required"):
        await receipts.ship(BILLING, batch, receipts_pb2.SignedHead())
    with pytest.raises(PermissionDenied, match=f"signed by {KB}, but the batch was shipped by {BILLING}"):
        await _ship(receipts, BILLING, batch, signer=KB)
    stranger = Issuer.ephemeral("mesh.test", FakeClock()).issue(BILLING, 3600)
    last = batch[-1]
    with pytest.raises(PermissionDenied, match="not issued by this trust domain's CA"):
        await receipts.ship(BILLING, batch, sign_head(stranger, last.sidecar_instance_id, last.seq, last.hash))
    head = sign_head(svid_of(BILLING), last.sidecar_instance_id, last.seq, last.hash)
    head.seq = 1
    with pytest.raises(InvalidInput, match="batch ends at seq 2"):
        await receipts.ship(BILLING, batch, head)
    assert await receipts.count() == 0


async def test_verify_catches_a_chain_rewritten_with_every_hash_recomputed(receipts: Receipts, raw_sql: RawSql) -> None:
    await _ship(receipts, BILLING, chain(3))
    rewritten = chain(3)
    rewritten[2].usage.cost_micro_usd = 9_999_999
    rewritten[2].hash = receipt_hash(rewritten[2])
    row = [rewritten[2].SerializeToString(deterministic=True), rewritten[2].hash, 9_999_999]
    raw_sql("UPDATE receipts SET body = ?, hash = ?, cost_micro_usd = ? WHERE seq = 3", *row)
    raw_sql("UPDATE receipt_chains SET head_hash = ?", rewritten[2].hash)
    [verdict] = await receipts.verify()
    assert verdict.problems == ("seq 3: the chain's head is not the one its sidecar signed (seq 3) (rewritten)",)
    raw_sql("UPDATE receipt_head_signatures SET hash = ?", rewritten[2].hash)
    raw_sql("DELETE FROM receipt_head_signatures")
    [unsigned] = await receipts.verify()
    assert unsigned.problems == ("no signed head: nothing proves its sidecar wrote this chain",)


async def test_retention_cuts_a_prefix_that_verify_checks_from_its_checkpoint(
    receipts: Receipts, stores: Stores, raw_sql: RawSql
) -> None:
    await _ship(receipts, BILLING, chain(8))  # started at 1001 to 1008
    assert await stores.receipts.forget_before(1005.0, now=2000.0) == 4
    [verdict] = await receipts.verify()
    assert verdict.intact and verdict.receipts == 4
    raw_sql("DELETE FROM receipts WHERE seq = 5")  # the first kept: no longer follows the checkpoint
    [removed] = await receipts.verify()
    assert removed.problems == ("seq 5 missing (removed)",)
    raw_sql("UPDATE receipt_checkpoints SET seq = 5")  # hiding it: the checkpoint no longer matches
    [edited] = await receipts.verify()
    assert edited.problems == (
        "the retention checkpoint at seq 5 does not match its digest (edited)",
        "seq 6: does not link to seq 5 (prev_hash differs)",
    )


async def test_retention_of_a_whole_chain_keeps_it_verifiable(receipts: Receipts, stores: Stores) -> None:
    await _ship(receipts, BILLING, chain(3))
    assert await stores.receipts.forget_before(5000.0, now=6000.0) == 3
    assert await stores.receipts.forget_before(5000.0, now=6000.0) == 0
    [verdict] = await receipts.verify()
    assert verdict.intact and verdict.receipts == 0


async def test_retention_on_postgresql_deletes_in_batches_each_leaving_a_checkpoint(
    receipts: Receipts, stores: Stores, raw_sql: RawSql, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is its own short transaction: the chain verifies from the checkpoint it
    leaves, whichever batch ran last."""
    from meshwarden.registry.store.postgres import receipts as pg_receipts

    if not isinstance(stores.receipts, pg_receipts.PostgresReceipts):
        pytest.skip("batches are how the PostgreSQL store deletes")
    monkeypatch.setattr(pg_receipts, "_RETENTION_BATCH", 3)
    await _ship(receipts, BILLING, chain(10))  # started at 1001 to 1010
    assert await stores.receipts.forget_before(1009.0, now=2000.0) == 8
    assert raw_sql.rows("SELECT seq FROM receipt_checkpoints") == [(8,)]
    [verdict] = await receipts.verify()
    assert verdict.intact and verdict.receipts == 2
