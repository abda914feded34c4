"""Receipt chains in SQLite: `receipts` (one row per receipt, its body and the columns copied
out of it, registry.store.receipt_columns) and `receipt_chains` (each sidecar's head)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from google.protobuf.message import DecodeError

from meshwarden.registry import receipt_chain
from meshwarden.registry.errors import StoreError
from meshwarden.registry.receipt_verification import checkpoint_digest, verify_chain
from meshwarden.registry.store.receipt_columns import COLUMNS, LOOKUP_COLUMNS, Row, stored_row
from meshwarden.registry.store.records import ChainHead, ChainVerdict, ReceiptCheckpoint, StoredHead, ToolCallQuery
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.store.sqlite.sessions import store_aggregates
from meshwarden.v1 import receipts_pb2

_PAGE: Final = 1000
_HEAD: Final = "SELECT sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at FROM receipt_chains"
_STORED: Final = (*COLUMNS, *LOOKUP_COLUMNS)
_INSERT: Final = f"INSERT INTO receipts ({', '.join(_STORED)}) VALUES ({', '.join('?' * len(_STORED))})"


class SqliteReceipts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ship(
        self,
        shipper_spiffe_id: str,
        chain: str,
        receipts: Sequence[receipts_pb2.Receipt],
        signed_head: receipts_pb2.SignedHead,
        shipped_at: float,
    ) -> int:
        def work(db: sqlite3.Connection) -> int:
            head = _head(db, chain)

            def held_hash(seq: int) -> str | None:
                sql = "SELECT hash FROM receipts WHERE sidecar_instance_id = ? AND seq = ?"
                row = db.execute(sql, (chain, seq)).fetchone()
                return None if row is None else str(row[0])

            added = receipt_chain.continue_chain(shipper_spiffe_id, chain, head, receipts, held_hash)
            db.executemany(_INSERT, [stored_row(r) for r in added.new])
            db.execute(
                "INSERT INTO receipt_chains (sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sidecar_instance_id) DO UPDATE SET "
                "head_seq = excluded.head_seq, head_hash = excluded.head_hash, shipped_at = excluded.shipped_at",
                (chain, shipper_spiffe_id, added.head_seq, added.head_hash, shipped_at),
            )
            if added.new:
                _record_signed_head(db, signed_head, shipper_spiffe_id)
                store_aggregates(db, added.new, _parse)
            return added.head_seq

        return await self._db.write(work, durable=True)

    async def head(self, sidecar_instance_id: str) -> ChainHead | None:
        return await self._db.read(lambda db: _head(db, sidecar_instance_id))

    async def heads(self) -> list[ChainHead]:
        def work(db: sqlite3.Connection) -> list[ChainHead]:
            return [ChainHead(*row) for row in db.execute(_HEAD + " ORDER BY sidecar_instance_id")]

        return await self._db.read(work)

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        def work(db: sqlite3.Connection) -> list[receipts_pb2.Receipt]:
            rows = db.execute(
                "SELECT body FROM receipts WHERE session_id = ? ORDER BY started_at, sidecar_instance_id, seq",
                (session_id,),
            )
            return [_parse(body) for (body,) in rows]

        return await self._db.read(work)

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        def work(db: sqlite3.Connection) -> list[receipts_pb2.Receipt]:
            rows = db.execute(
                "SELECT body FROM receipts WHERE started_at >= ? AND started_at < ? "
                "ORDER BY started_at, sidecar_instance_id, seq",
                (since, until),
            )
            return [_parse(body) for (body,) in rows]

        return await self._db.read_apart(work)

    async def for_task(self, task_id: str, limit: int) -> list[receipts_pb2.Receipt]:
        def work(db: sqlite3.Connection) -> list[receipts_pb2.Receipt]:
            rows = db.execute(
                # "task_id != ''" lets SQLite use the partial index receipts_by_task
                "SELECT body FROM receipts WHERE task_id = ? AND task_id != '' "
                "ORDER BY started_at, sidecar_instance_id, seq LIMIT ?",
                (task_id, limit),
            )
            return [r for r in (_parse(body) for (body,) in rows) if r.task_id == task_id]

        return await self._db.read(work)

    async def count(self) -> int:
        return await self._db.read(lambda db: int(db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]))

    async def tool_calls(self, query: ToolCallQuery) -> tuple[list[receipts_pb2.Receipt], bool]:
        """The agent, tool, server, session and time narrow the rows in SQL; kind and decision
        are read from each receipt, a page of rows at a time, newest first."""
        where = ["direction = 'outbound'", "started_at >= ?", "started_at < ?"]
        params: list[object] = [query.since, query.until]
        for column, value in (
            ("caller_agent", query.agent),
            ("capability", query.tool),
            ("session_id", query.session_id),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if query.server:
            where.append("substr(capability, 1, ?) = ?")  # "server." prefix; no LIKE, so '_' is no wildcard
            params += [len(query.server) + 1, query.server + "."]
        sql = (
            f"SELECT started_at, sidecar_instance_id, seq, body FROM receipts WHERE {' AND '.join(where)} "
            "AND (started_at, sidecar_instance_id, seq) < (?, ?, ?) "
            f"ORDER BY started_at DESC, sidecar_instance_id DESC, seq DESC LIMIT {_PAGE}"
        )

        def work(db: sqlite3.Connection) -> tuple[list[receipts_pb2.Receipt], bool]:
            found: list[receipts_pb2.Receipt] = []
            after: tuple[float, str, int] = (float("inf"), "", 0)
            while True:
                rows = db.execute(sql, (*params, *after)).fetchall()
                for row in rows:
                    receipt = _parse(row[3])
                    if receipt.call_kind != "tool" or (query.decision and receipt.policy_decision != query.decision):
                        continue
                    if len(found) == query.limit:
                        return found, True
                    found.append(receipt)
                if len(rows) < _PAGE:
                    return found, False
                after = (rows[-1][0], rows[-1][1], rows[-1][2])

        return await self._db.read_apart(work)

    async def verify(self, trust_bundle_pem: bytes, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        def work(db: sqlite3.Connection) -> list[ChainVerdict]:
            heads = {head.sidecar_instance_id: head for head in _heads(db, sidecar_instance_id)}
            chains = sorted(set(heads) | set(_chains_with_rows(db, sidecar_instance_id)))
            return [
                verify_chain(
                    chain,
                    _rows(db, chain),
                    heads.get(chain),
                    _signed_head(db, chain),
                    trust_bundle_pem,
                    _checkpoint(db, chain),
                )
                for chain in chains
            ]

        return await self._db.read_apart(work)

    async def forget_before(self, cutoff: float, now: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            forgotten = 0
            for (chain,) in db.execute("SELECT sidecar_instance_id FROM receipt_chains").fetchall():
                forgotten += _cut(db, chain, cutoff, now)
            return forgotten

        return await self._db.write(work)


def _cut(db: sqlite3.Connection, chain: str, cutoff: float, now: float) -> int:
    """Deletes the chain's receipts before its first one started at or after `cutoff` (a prefix:
    the chain stays whole from there), recording the last deleted one as its checkpoint."""
    young = db.execute(
        "SELECT seq FROM receipts WHERE sidecar_instance_id = ? AND started_at >= ? ORDER BY seq LIMIT 1",
        (chain, cutoff),
    ).fetchone()
    last = db.execute(
        "SELECT seq, hash FROM receipts WHERE sidecar_instance_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1",
        (chain, young[0] if young is not None else 2**62),
    ).fetchone()
    if last is None:
        return 0
    seq, hash_ = int(last[0]), str(last[1])
    deleted = db.execute("DELETE FROM receipts WHERE sidecar_instance_id = ? AND seq <= ?", (chain, seq)).rowcount
    db.execute(
        "INSERT OR REPLACE INTO receipt_checkpoints (sidecar_instance_id, seq, hash, cut_at, digest) "
        "VALUES (?, ?, ?, ?, ?)",
        (chain, seq, hash_, now, checkpoint_digest(chain, seq, hash_, now)),
    )
    return int(deleted)


def _checkpoint(db: sqlite3.Connection, chain: str) -> ReceiptCheckpoint | None:
    row = db.execute(
        "SELECT seq, hash, cut_at, digest FROM receipt_checkpoints WHERE sidecar_instance_id = ?", (chain,)
    ).fetchone()
    return None if row is None else ReceiptCheckpoint(int(row[0]), str(row[1]), float(row[2]), str(row[3]))


def _head(db: sqlite3.Connection, chain: str) -> ChainHead | None:
    row = db.execute(_HEAD + " WHERE sidecar_instance_id = ?", (chain,)).fetchone()
    return None if row is None else ChainHead(*row)


def _record_signed_head(db: sqlite3.Connection, head: receipts_pb2.SignedHead, signer_spiffe_id: str) -> None:
    """Keeps `head` as its chain's signed head unless a newer one is kept (inside the batch's transaction)."""
    db.execute(
        "INSERT INTO receipt_head_signatures (sidecar_instance_id, seq, hash, signer_spiffe_id, signed_head) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sidecar_instance_id) DO UPDATE SET seq = excluded.seq, "
        "hash = excluded.hash, signer_spiffe_id = excluded.signer_spiffe_id, signed_head = excluded.signed_head "
        "WHERE excluded.seq > receipt_head_signatures.seq",
        (head.sidecar_instance_id, head.seq, head.hash, signer_spiffe_id, head.SerializeToString(deterministic=True)),
    )


def _signed_head(db: sqlite3.Connection, chain: str) -> StoredHead | None:
    row = db.execute(
        "SELECT seq, hash, signer_spiffe_id, signed_head FROM receipt_head_signatures WHERE sidecar_instance_id = ?",
        (chain,),
    ).fetchone()
    return None if row is None else StoredHead(int(row[0]), str(row[1]), str(row[2]), bytes(row[3]))


def _heads(db: sqlite3.Connection, only: str) -> list[ChainHead]:
    rows = db.execute(_HEAD + " WHERE sidecar_instance_id = ?", (only,)) if only else db.execute(_HEAD)
    return [ChainHead(*row) for row in rows]


def _chains_with_rows(db: sqlite3.Connection, only: str) -> list[str]:
    if only:
        found = db.execute("SELECT 1 FROM receipts WHERE sidecar_instance_id = ? LIMIT 1", (only,)).fetchone()
        return [only] if found else []
    return [chain for (chain,) in db.execute("SELECT DISTINCT sidecar_instance_id FROM receipts")]


def _rows(db: sqlite3.Connection, chain: str) -> Iterator[Row]:
    """The chain's rows by seq, a page at a time (a chain can be long)."""
    after = 0
    while True:
        page = db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM receipts WHERE sidecar_instance_id = ? AND seq > ? "
            f"ORDER BY seq LIMIT {_PAGE}",
            (chain, after),
        ).fetchall()
        yield from page
        if len(page) < _PAGE:
            return
        last = page[-1][1]
        after = last if isinstance(last, int) else after + _PAGE


def _parse(body: bytes) -> receipts_pb2.Receipt:
    receipt = receipts_pb2.Receipt()
    try:
        receipt.ParseFromString(body)
    except DecodeError as exc:
        raise StoreError(f"a stored receipt is unreadable ({exc}); run `meshwarden receipts verify`") from exc
    return receipt
