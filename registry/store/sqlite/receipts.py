"""Receipt chains in SQLite: `receipts` (one row per receipt, its body and the columns copied
out of it, registry.store.receipt_columns) and `receipt_chains` (each sidecar's head)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from google.protobuf.message import DecodeError

from meshwarden.registry import receipt_chain
from meshwarden.registry.errors import StoreError
from meshwarden.registry.receipt_verification import verify_chain
from meshwarden.registry.store.receipt_columns import COLUMNS, Row, columns_of
from meshwarden.registry.store.records import ChainHead, ChainVerdict
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.v1 import receipts_pb2

_PAGE: Final = 1000
_HEAD: Final = "SELECT sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at FROM receipt_chains"
_INSERT: Final = f"INSERT INTO receipts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class SqliteReceipts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ship(
        self, shipper_spiffe_id: str, chain: str, receipts: Sequence[receipts_pb2.Receipt], shipped_at: float
    ) -> int:
        def work(db: sqlite3.Connection) -> int:
            head = _head(db, chain)

            def held_hash(seq: int) -> str | None:
                sql = "SELECT hash FROM receipts WHERE sidecar_instance_id = ? AND seq = ?"
                row = db.execute(sql, (chain, seq)).fetchone()
                return None if row is None else str(row[0])

            added = receipt_chain.continue_chain(shipper_spiffe_id, chain, head, receipts, held_hash)
            db.executemany(_INSERT, [columns_of(r, r.SerializeToString(deterministic=True)) for r in added.new])
            db.execute(
                "INSERT INTO receipt_chains (sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sidecar_instance_id) DO UPDATE SET "
                "head_seq = excluded.head_seq, head_hash = excluded.head_hash, shipped_at = excluded.shipped_at",
                (chain, shipper_spiffe_id, added.head_seq, added.head_hash, shipped_at),
            )
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

    async def count(self) -> int:
        return await self._db.read(lambda db: int(db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]))

    async def verify(self, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        def work(db: sqlite3.Connection) -> list[ChainVerdict]:
            heads = {head.sidecar_instance_id: head for head in _heads(db, sidecar_instance_id)}
            chains = sorted(set(heads) | set(_chains_with_rows(db, sidecar_instance_id)))
            return [verify_chain(chain, _rows(db, chain), heads.get(chain)) for chain in chains]

        return await self._db.read_apart(work)


def _head(db: sqlite3.Connection, chain: str) -> ChainHead | None:
    row = db.execute(_HEAD + " WHERE sidecar_instance_id = ?", (chain,)).fetchone()
    return None if row is None else ChainHead(*row)


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
