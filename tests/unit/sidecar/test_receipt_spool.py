"""sidecar.receipt_spool against a real SQLite file: the chain, its head across restarts,
batches and acknowledgements."""

from __future__ import annotations

import stat
from pathlib import Path

from meshwarden.receipt_hash import receipt_hash
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolReader, spool_path
from meshwarden.sidecar.spool_backlog import SpoolCap, over_cap
from meshwarden.v1 import receipts_pb2

SPIFFE_ID = "spiffe://mesh.test/agent/support"


def _append(spool: ReceiptSpool, count: int, payload: bytes = b"") -> list[receipts_pb2.Receipt]:
    return [
        spool.append(receipts_pb2.Receipt(direction="outbound", call_id=f"c{i}", arguments_json=payload))
        for i in range(count)
    ]


def _parse(body: bytes) -> receipts_pb2.Receipt:
    receipt = receipts_pb2.Receipt()
    receipt.ParseFromString(body)
    return receipt


def test_append_chains_receipts_in_order(tmp_path: Path) -> None:
    spool = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    first, second, third = _append(spool, 3)
    assert [r.seq for r in (first, second, third)] == [1, 2, 3]
    assert (first.prev_hash, second.prev_hash, third.prev_hash) == ("", first.hash, second.hash)
    assert all(r.hash == receipt_hash(r) for r in (first, second, third))
    assert {r.sidecar_instance_id for r in (first, third)} == {"support-1"}
    assert third.sidecar_spiffe_id == SPIFFE_ID
    assert stat.S_IMODE(spool_path(tmp_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(spool_path(tmp_path).parent.stat().st_mode) == 0o700


def test_a_reopened_spool_continues_its_chain_even_after_everything_was_acknowledged(tmp_path: Path) -> None:
    spool = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    appended = _append(spool, 3)
    reader = SpoolReader(spool_path(tmp_path))
    batch = reader.batch("support-1", 10, 1 << 20)
    assert batch is not None and spool.prune(batch, 3) == 3
    assert reader.pending() == 0
    spool.close()  # as after kill -9: nothing but the file is left
    again = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    [fourth] = _append(again, 1)
    assert (fourth.seq, fourth.prev_hash) == (4, appended[-1].hash)


def test_a_new_instance_id_starts_its_own_chain_and_the_old_one_still_ships(tmp_path: Path) -> None:
    old = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    _append(old, 2)
    old.close()
    new = ReceiptSpool.open(tmp_path, instance_id="support-2", spiffe_id=SPIFFE_ID)
    [first] = _append(new, 1)
    assert (first.seq, first.prev_hash) == (1, "")
    reader = SpoolReader(spool_path(tmp_path))
    assert sorted(reader.chains()) == ["support-1", "support-2"]
    batch = reader.batch("support-1", 10, 1 << 20)
    assert batch is not None and (batch.first_seq, batch.last_seq) == (1, 2)
    assert [_parse(b).sidecar_instance_id for b in batch.bodies] == ["support-1", "support-1"]


def test_batches_are_bounded_by_count_and_bytes_but_hold_at_least_one(tmp_path: Path) -> None:
    spool = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    _append(spool, 10, payload=b"x" * 1000)
    reader = SpoolReader(spool_path(tmp_path))
    by_count = reader.batch("support-1", 4, 1 << 20)
    assert by_count is not None and (by_count.first_seq, by_count.last_seq) == (1, 4)
    by_bytes = reader.batch("support-1", 10, 4000)  # each receipt is a little over 1000 bytes
    assert by_bytes is not None and len(by_bytes.bodies) == 3
    one = reader.batch("support-1", 10, 10)
    assert one is not None and len(one.bodies) == 1
    first = reader.batch("support-1", 8, 1 << 20)
    assert first is not None and spool.prune(first, 8) == 8
    rest = reader.batch("support-1", 10, 1 << 20)
    assert rest is not None and (rest.first_seq, rest.last_seq) == (9, 10)
    assert [_parse(b).seq for b in rest.bodies] == [9, 10]
    spool.prune(rest, 10)
    assert reader.batch("support-1", 10, 1 << 20) is None
    assert reader.chains() == []
    reader.checkpoint()


def test_backlog_counts_what_the_registry_has_not_taken_and_the_cap_says_why(tmp_path: Path) -> None:
    spool = ReceiptSpool.open(tmp_path, instance_id="i-1", spiffe_id="spiffe://t/agent/a")
    reader = SpoolReader(spool.path)
    try:
        assert reader.backlog().receipts == 0 and reader.backlog().oldest_started_at is None
        for at in (1000, 1001):
            receipt = receipts_pb2.Receipt(direction="outbound", call_id=f"c{at}")
            receipt.started_at.FromSeconds(at)
            spool.append(receipt)
        backlog = reader.backlog()
        assert (backlog.receipts, backlog.oldest_started_at) == (2, 1000.0) and backlog.bytes > 0
        roomy = SpoolCap(max_bytes=10_000, max_age_s=60)
        assert over_cap(backlog, roomy, now=1050) is None
        assert "is 61 s old, over --receipt-spool-max-age-s 60" in (over_cap(backlog, roomy, now=1061) or "")
        tight = SpoolCap(max_bytes=1, max_age_s=60)
        assert "over --receipt-spool-max-bytes 1" in (over_cap(backlog, tight, now=1000) or "")
    finally:
        reader.close()
        spool.close()


def test_the_writer_never_waits_for_the_shipper(tmp_path: Path) -> None:
    """The shipper's connection only reads and checkpoints: while it is in the middle of a read
    (a snapshot held open) and checkpoints, appends and prunes go through at once. The writer
    waits for no lock at all (busy timeout 0), so any wait would be an error here."""
    spool = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    _append(spool, 5)
    reader = SpoolReader(spool_path(tmp_path))
    assert not hasattr(reader, "acknowledge") and not hasattr(reader, "prune")  # it cannot write
    reader.checkpoint()
    reader._db.execute("BEGIN")
    batch = reader.batch("support-1", 3, 1 << 20)
    _append(spool, 5)  # no SpoolError: nothing of the reader's blocks the writer
    assert batch is not None and spool.prune(batch, 3) == 3
    reader._db.execute("COMMIT")
    reader.checkpoint()
    _append(spool, 1)
    assert reader.pending() == 8


def test_a_quarantine_receipt_replaces_one_and_the_later_ones_link_to_it(tmp_path: Path) -> None:
    spool = ReceiptSpool.open(tmp_path, instance_id="support-1", spiffe_id=SPIFFE_ID)
    first, _poisoned, _third = _append(spool, 3)
    stand = spool.replace("support-1", 2, receipts_pb2.Receipt(direction="outbound", status="QUARANTINED"))
    fourth = spool.append(receipts_pb2.Receipt(direction="outbound", call_id="c3"))
    reader = SpoolReader(spool_path(tmp_path))
    batch = reader.batch("support-1", 10, 1 << 20)
    assert batch is not None
    chain = [_parse(body) for body in batch.bodies]
    assert [r.seq for r in chain] == [1, 2, 3, 4]
    assert chain[1].status == "QUARANTINED" and (chain[1].prev_hash, chain[1].hash) == (first.hash, stand.hash)
    assert all(r.hash == receipt_hash(r) for r in chain)
    assert [r.prev_hash for r in chain[1:]] == [r.hash for r in chain[:-1]]
    assert chain[3].hash == fourth.hash  # appended after the replacement, to the relinked head
