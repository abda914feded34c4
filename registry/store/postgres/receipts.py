"""Receipt chains in PostgreSQL: `receipts` (one row per receipt, its body and the columns
copied out of it, registry.store.receipt_columns), `receipt_chains` (each sidecar's head) and
`receipt_head_signatures`.

A batch is one transaction that first takes a transaction-level advisory lock on its chain,
so two replicas given the same chain at once (a sidecar that failed over mid-shipment) apply
it one after the other and the continuity rules (registry.receipt_chain) see the head the
other committed. The commit is durable (synchronous_commit as the server sets it, on by default).
Verification decodes and hashes every receipt: it runs in a worker thread, a chain at a time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, Final

from google.protobuf.message import DecodeError

from meshwarden.registry import receipt_chain
from meshwarden.registry.errors import StoreError
from meshwarden.registry.receipt_verification import checkpoint_digest, verify_chain
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.postgres.sessions import store_aggregates
from meshwarden.registry.store.receipt_columns import COLUMNS, LOOKUP_COLUMNS, Row, stored_row
from meshwarden.registry.store.records import ChainHead, ChainVerdict, ReceiptCheckpoint, StoredHead, ToolCallQuery
from meshwarden.v1 import receipts_pb2

_PAGE: Final = 1000
# Receipts deleted per transaction by retention.
_RETENTION_BATCH: Final = 5000
_HEAD: Final = "SELECT sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at FROM receipt_chains"
_STORED: Final = (*COLUMNS, *LOOKUP_COLUMNS)
_INSERT: Final = (
    f"INSERT INTO receipts ({', '.join(_STORED)}) VALUES ({', '.join(f'${n}' for n in range(1, len(_STORED) + 1))})"
)


class PostgresReceipts:
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
        async def work(connection: Connection) -> int:
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('receipts:' || $1))", chain)
            head = await _head(connection, chain)
            held = dict(
                await connection.fetch(
                    "SELECT seq, hash FROM receipts WHERE sidecar_instance_id = $1 AND seq = ANY($2::bigint[])",
                    chain,
                    [r.seq for r in receipts],
                )
            )
            added = receipt_chain.continue_chain(shipper_spiffe_id, chain, head, receipts, held.get)
            if added.new:
                await connection.executemany(_INSERT, [stored_row(r) for r in added.new])
            await connection.execute(
                "INSERT INTO receipt_chains (sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sidecar_instance_id) DO UPDATE SET "
                "head_seq = excluded.head_seq, head_hash = excluded.head_hash, shipped_at = excluded.shipped_at",
                chain,
                shipper_spiffe_id,
                added.head_seq,
                added.head_hash,
                shipped_at,
            )
            if added.new:
                await _record_signed_head(connection, signed_head, shipper_spiffe_id)
                await store_aggregates(connection, added.new)
            return added.head_seq

        return await self._db.write(work)

    async def forget_before(self, cutoff: float, now: float) -> int:
        """Cuts each chain in transactions of at most _RETENTION_BATCH deletions, each moving the
        chain's checkpoint to its last deleted receipt, so no lock is held for long (a sidecar
        shipping to the chain waits for one batch at most) and `verify` finds the chain whole
        from its checkpoint between any two batches."""
        chains = await self._db.read(lambda c: c.fetch("SELECT sidecar_instance_id FROM receipt_chains"))
        forgotten = 0
        for (chain,) in chains:
            while True:
                deleted = await self._db.write(functools.partial(_cut, chain=chain, cutoff=cutoff, now=now))
                forgotten += deleted
                if deleted < _RETENTION_BATCH:
                    break
        return forgotten

    async def head(self, sidecar_instance_id: str) -> ChainHead | None:
        return await self._db.read(lambda connection: _head(connection, sidecar_instance_id))

    async def heads(self) -> list[ChainHead]:
        async def work(connection: Connection) -> list[ChainHead]:
            return [ChainHead(*row) for row in await connection.fetch(_HEAD + " ORDER BY sidecar_instance_id")]

        return await self._db.read(work)

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        async def work(connection: Connection) -> list[bytes]:
            rows = await connection.fetch(
                "SELECT body FROM receipts WHERE session_id = $1 ORDER BY started_at, sidecar_instance_id, seq",
                session_id,
            )
            return [r[0] for r in rows]

        return _parse_all(await self._db.read(work))

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        async def work(connection: Connection) -> list[bytes]:
            rows = await connection.fetch(
                "SELECT body FROM receipts WHERE started_at >= $1 AND started_at < $2 "
                "ORDER BY started_at, sidecar_instance_id, seq",
                since,
                until,
            )
            return [r[0] for r in rows]

        bodies = await self._db.read(work)
        return await asyncio.to_thread(_parse_all, bodies)

    async def for_task(self, task_id: str, limit: int) -> list[receipts_pb2.Receipt]:
        async def work(connection: Connection) -> list[bytes]:
            rows = await connection.fetch(
                # "task_id <> ''" lets a generic (prepared) plan use the partial index receipts_by_task
                "SELECT body FROM receipts WHERE task_id = $1 AND task_id <> '' "
                "ORDER BY started_at, sidecar_instance_id, seq LIMIT $2",
                task_id,
                limit,
            )
            return [r[0] for r in rows]

        return [r for r in _parse_all(await self._db.read(work)) if r.task_id == task_id]

    async def count(self) -> int:
        return await self._db.read(lambda connection: _count(connection))

    async def tool_calls(self, query: ToolCallQuery) -> tuple[list[receipts_pb2.Receipt], bool]:
        """The agent, tool, server, session and time narrow the rows in SQL; kind and decision
        are read from each receipt, a page of rows at a time, newest first."""
        where = ["direction = 'outbound'", "started_at >= $1", "started_at < $2"]
        params: list[object] = [query.since, query.until]
        for column, value in (
            ("caller_agent", query.agent),
            ("capability", query.tool),
            ("session_id", query.session_id),
        ):
            if value:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        if query.server:
            params += [len(query.server) + 1, query.server + "."]
            where.append(f"substr(capability, 1, ${len(params) - 1}) = ${len(params)}")  # no LIKE: '_' is literal
        n = len(params)
        sql = (
            f"SELECT started_at, sidecar_instance_id, seq, body FROM receipts WHERE {' AND '.join(where)} "
            f"AND (started_at, sidecar_instance_id, seq) < (${n + 1}, ${n + 2}, ${n + 3}) "
            f"ORDER BY started_at DESC, sidecar_instance_id DESC, seq DESC LIMIT {_PAGE}"
        )

        async def work(connection: Connection) -> tuple[list[receipts_pb2.Receipt], bool]:
            found: list[receipts_pb2.Receipt] = []
            after: tuple[float, str, int] = (float("inf"), "", 0)
            while True:
                rows = await connection.fetch(sql, *params, *after)
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

        return await self._db.read(work)

    async def verify(self, trust_bundle_pem: bytes, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        async def chains(connection: Connection) -> tuple[dict[str, ChainHead], list[str]]:
            heads = {h.sidecar_instance_id: h for h in await _heads(connection, sidecar_instance_id)}
            if sidecar_instance_id:
                with_rows = await connection.fetch(
                    "SELECT DISTINCT sidecar_instance_id FROM receipts WHERE sidecar_instance_id = $1",
                    sidecar_instance_id,
                )
            else:
                with_rows = await connection.fetch("SELECT DISTINCT sidecar_instance_id FROM receipts")
            return heads, sorted(set(heads) | {r[0] for r in with_rows})

        heads, names = await self._db.read(chains)
        verdicts = []
        for chain in names:
            rows, signed, checkpoint = await self._db.read(functools.partial(_chain_rows, chain=chain))
            verdicts.append(
                await asyncio.to_thread(
                    verify_chain, chain, rows, heads.get(chain), signed, trust_bundle_pem, checkpoint
                )
            )
        return verdicts


async def _count(connection: Connection) -> int:
    return int(await connection.fetchval("SELECT COUNT(*) FROM receipts"))


async def _head(connection: Connection, chain: str) -> ChainHead | None:
    row = await connection.fetchrow(_HEAD + " WHERE sidecar_instance_id = $1", chain)
    return None if row is None else ChainHead(*row)


async def _heads(connection: Connection, only: str) -> list[ChainHead]:
    rows = await (
        connection.fetch(_HEAD + " WHERE sidecar_instance_id = $1", only) if only else connection.fetch(_HEAD)
    )
    return [ChainHead(*row) for row in rows]


async def _chain_rows(
    connection: Connection, *, chain: str
) -> tuple[list[Row], StoredHead | None, ReceiptCheckpoint | None]:
    """The chain's rows by seq (read a page at a time), its signed head and its retention
    checkpoint, read together."""
    rows: list[Row] = []
    after = 0
    while True:
        page = await connection.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM receipts WHERE sidecar_instance_id = $1 AND seq > $2 "
            f"ORDER BY seq LIMIT {_PAGE}",
            chain,
            after,
        )
        rows += [tuple(r) for r in page]
        if len(page) < _PAGE:
            break
        after = int(page[-1][1])
    signed = await connection.fetchrow(
        "SELECT seq, hash, signer_spiffe_id, signed_head FROM receipt_head_signatures WHERE sidecar_instance_id = $1",
        chain,
    )
    head = None if signed is None else StoredHead(int(signed[0]), str(signed[1]), str(signed[2]), bytes(signed[3]))
    cut = await connection.fetchrow(
        "SELECT seq, hash, cut_at, digest FROM receipt_checkpoints WHERE sidecar_instance_id = $1", chain
    )
    checkpoint = None if cut is None else ReceiptCheckpoint(int(cut[0]), str(cut[1]), float(cut[2]), str(cut[3]))
    return rows, head, checkpoint


async def _cut(connection: Connection, *, chain: str, cutoff: float, now: float) -> int:
    """Deletes at most _RETENTION_BATCH of the chain's oldest receipts among those before its
    first one started at or after `cutoff` (a prefix: the chain stays whole from there),
    recording the last deleted one as its checkpoint. Holds the chain's lock, as a batch
    being stored does, so the two never interleave."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtext('receipts:' || $1))", chain)
    young = await connection.fetchval(
        "SELECT min(seq) FROM receipts WHERE sidecar_instance_id = $1 AND started_at >= $2", chain, cutoff
    )
    last = await connection.fetchrow(
        "SELECT seq, hash FROM receipts WHERE sidecar_instance_id = $1 AND seq < $2 ORDER BY seq LIMIT 1 OFFSET $3",
        chain,
        young if young is not None else 2**62,
        _RETENTION_BATCH - 1,
    ) or await connection.fetchrow(
        "SELECT seq, hash FROM receipts WHERE sidecar_instance_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1",
        chain,
        young if young is not None else 2**62,
    )
    if last is None:
        return 0
    seq, hash_ = int(last[0]), str(last[1])
    deleted = await connection.execute("DELETE FROM receipts WHERE sidecar_instance_id = $1 AND seq <= $2", chain, seq)
    await connection.execute(
        "INSERT INTO receipt_checkpoints (sidecar_instance_id, seq, hash, cut_at, digest) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (sidecar_instance_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
        "cut_at = excluded.cut_at, digest = excluded.digest",
        chain,
        seq,
        hash_,
        now,
        checkpoint_digest(chain, seq, hash_, now),
    )
    return int(deleted.rpartition(" ")[2])


async def _record_signed_head(connection: Connection, head: receipts_pb2.SignedHead, signer_spiffe_id: str) -> None:
    """Keeps `head` as its chain's signed head unless a newer one is kept (inside the batch's transaction)."""
    await connection.execute(
        "INSERT INTO receipt_head_signatures (sidecar_instance_id, seq, hash, signer_spiffe_id, signed_head) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sidecar_instance_id) DO UPDATE SET seq = excluded.seq, "
        "hash = excluded.hash, signer_spiffe_id = excluded.signer_spiffe_id, signed_head = excluded.signed_head "
        "WHERE excluded.seq > receipt_head_signatures.seq",
        head.sidecar_instance_id,
        head.seq,
        head.hash,
        signer_spiffe_id,
        head.SerializeToString(deterministic=True),
    )


def _parse_all(bodies: list[bytes]) -> list[receipts_pb2.Receipt]:
    return [_parse(body) for body in bodies]


def _parse(body: Any) -> receipts_pb2.Receipt:
    receipt = receipts_pb2.Receipt()
    try:
        receipt.ParseFromString(bytes(body))
    except DecodeError as exc:
        raise StoreError(f"a stored receipt is unreadable ({exc}); run `meshwarden receipts verify`") from exc
    return receipt
