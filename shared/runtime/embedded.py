"""Embedded adapters: event store, document store and event bus on SQLite files (WAL).

Each SQLite file is driven by one thread: an operation runs whole inside it, so a transaction is
never interleaved with another coroutine's statements, and the event loop never blocks on disk.
Several processes may share a file (WAL + busy timeout); the bus then polls for new messages.
"""

import asyncio
import contextlib
import json
import sqlite3
import time
import zlib
from collections.abc import AsyncGenerator, Callable, Container, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic_core import to_json

from shared.events import Envelope, new_id
from shared.runtime.metrics import count_appended
from shared.runtime.ports import (
    AppendSignal,
    BatchHandler,
    ConcurrencyError,
    DuplicateKeyError,
    Filter,
    Message,
    MessageHandler,
    Offsets,
    OutgoingMessage,
    Sort,
    Unpublished,
    Write,
    check_batch,
    check_collection,
    check_sort,
    hand_over,
    parse_filter,
)
from shared.runtime.tasks import Supervised, cancel, finish, start_supervised

T = TypeVar("T")
log = structlog.get_logger("civique.embedded")


class SqliteDatabase:
    """One SQLite file, one connection, one worker thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in the database thread; callers wrap writes in `transaction`."""

        def call() -> T:
            if self._conn is None:
                self._conn = self._connect()
            result = fn(self._conn)
            if isinstance(result, sqlite3.Cursor):
                # finalised in the event loop's thread, a cursor resets a cached statement this thread may be binding
                result.close()
                return None  # type: ignore[return-value]
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Idempotent: the event store and the document store of a service share the database."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` inside BEGIN IMMEDIATE … COMMIT (rolled back on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SqliteEventStore:
    def __init__(self, db: SqliteDatabase, service: str) -> None:
        self._db = db
        self.service = service
        self.appended = AppendSignal()
        self._ready = False

    async def _setup(self) -> None:
        if self._ready:
            return
        await self._db.run(
            lambda c: c.executescript(
                """
                CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL UNIQUE,
                    stream_id TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    envelope TEXT NOT NULL,
                    published INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (stream_id, version)
                );
                CREATE INDEX IF NOT EXISTS events_unpublished ON events (published, seq);
                """
            )
        )
        self._ready = True

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        check_batch(stream_id, expected_version, events)
        await self._setup()
        rows = [(str(e.event_id), stream_id, e.stream_version, e.model_dump_json()) for e in events]

        def write(conn: sqlite3.Connection) -> None:
            (head,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            if head != expected_version:
                raise ConcurrencyError(stream_id, expected_version, head)
            conn.executemany("INSERT INTO events (event_id, stream_id, version, envelope) VALUES (?,?,?,?)", rows)

        try:
            await self._db.run(lambda c: transaction(c, write))
        except sqlite3.IntegrityError as exc:  # another process won the race between check and insert
            raise ConcurrencyError(stream_id, expected_version) from exc
        self.appended.notify()
        count_appended(self.service, events)

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        await self._setup()
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT envelope FROM events WHERE stream_id = ? AND version > ? ORDER BY version",
                (stream_id, after_version),
            ).fetchall()
        )
        return [Envelope.model_validate_json(r[0]) for r in rows]

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        await self._setup()
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT seq, envelope FROM events WHERE published = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        )
        return [Unpublished(token=seq, events=(Envelope.model_validate_json(raw),)) for seq, raw in rows]

    async def mark_published(self, batches: Sequence[Unpublished]) -> None:
        seqs = [(b.token,) for b in batches]
        await self._db.run(
            lambda c: transaction(c, lambda c: c.executemany("UPDATE events SET published = 1 WHERE seq = ?", seqs))
        )

    async def backlog(self) -> int:
        await self._setup()
        return await self._db.run(lambda c: c.execute("SELECT COUNT(*) FROM events WHERE published = 0").fetchone()[0])

    async def ping(self) -> None:
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._db.close()


# ---- documents ----


def _path(field: str) -> str:
    return f"json_extract(body, '$.{field}')"


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def where_sql(where: Filter | None) -> tuple[str, list[Any]]:
    """Translate the filter subset into a SQL condition on the JSON body."""
    clauses, params = [], []
    for cond in parse_filter(where):
        expr, value = _path(cond.field), cond.value
        match cond.operator:
            case "$eq" if value is None:  # MongoDB: null matches a missing field too
                clauses.append(f"{expr} IS NULL")
            case "$eq":
                clauses.append(f"{expr} = ?")
                params.append(_sql_value(value))
            case "$ne":
                clauses.append(f"{expr} IS NOT ?")
                params.append(_sql_value(value))
            case "$in" | "$nin":
                present = [_sql_value(v) for v in value if v is not None]
                parts = [f"{expr} IN ({','.join('?' * len(present))})"] if present else []
                if None in value:
                    parts.append(f"{expr} IS NULL")
                test = f"({' OR '.join(parts)})" if parts else "0"
                clauses.append(test if cond.operator == "$in" else f"NOT {test}")
                params.extend(present)
            case "$exists":
                clauses.append(f"json_type(body, '$.{cond.field}') IS {'NOT ' if value else ''}NULL")
            case _:
                if value is None:  # MongoDB: a range against null matches nothing
                    clauses.append("0")
                    continue
                sql_op = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[cond.operator]
                clauses.append(f"{expr} {sql_op} ?")
                params.append(_sql_value(value))
    return (" AND ".join(clauses) or "1"), params


class SqliteDocumentStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._tables: set[str] = set()

    async def _table(self, collection: str) -> str:
        table = f"docs_{check_collection(collection)}"
        if table not in self._tables:
            await self._db.run(
                lambda c: c.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            )
            self._tables.add(table)
        return table

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        table = await self._table(collection)
        row = await self._db.run(lambda c: c.execute(f"SELECT body FROM {table} WHERE id = ?", (doc_id,)).fetchone())
        return json.loads(row[0]) if row else None

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        # not INSERT OR REPLACE: that would delete another document holding a unique value
        await self._write(collection, doc_id, doc, "ON CONFLICT (id) DO UPDATE SET body = excluded.body")

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        await self._write(collection, doc_id, doc, "")

    async def _write(self, collection: str, doc_id: str, doc: Mapping[str, Any], on_conflict: str) -> None:
        table = await self._table(collection)
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        sql = f"INSERT INTO {table} (id, body) VALUES (?, ?) {on_conflict}"
        try:
            await self._db.run(lambda c: c.execute(sql, (doc_id, body)))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(f"{collection}/{doc_id}") from exc

    async def delete(self, collection: str, doc_id: str) -> bool:
        table = await self._table(collection)
        return await self._db.run(lambda c: c.execute(f"DELETE FROM {table} WHERE id = ?", (doc_id,)).rowcount > 0)

    async def write(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        tables = {c: await self._table(c) for c in dict.fromkeys(w.collection for w in writes)}
        statements: list[tuple[str, tuple[str, ...]]] = []
        for w in writes:
            table = tables[w.collection]
            if w.doc is None:
                statements.append((f"DELETE FROM {table} WHERE id = ?", (w.doc_id,)))
                continue
            body = json.dumps(w.doc, separators=(",", ":"), ensure_ascii=False)
            upsert = "" if w.insert_only else " ON CONFLICT (id) DO UPDATE SET body = excluded.body"
            statements.append((f"INSERT INTO {table} (id, body) VALUES (?, ?){upsert}", (w.doc_id, body)))

        def apply(conn: sqlite3.Connection) -> None:
            for sql, params in statements:
                conn.execute(sql, params)

        try:
            await self._db.run(lambda c: transaction(c, apply))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(str(exc)) from exc

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        check_sort(sort)
        table = await self._table(collection)
        condition, params = where_sql(where)
        order = ", ".join([*(f"{_path(f)} {'ASC' if d == 1 else 'DESC'}" for f, d in sort), "id"])
        sql = f"SELECT body FROM {table} WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"
        rows = await self._db.run(lambda c: c.execute(sql, (*params, limit or -1, skip)).fetchall())
        return [json.loads(r[0]) for r in rows]

    async def count(self, collection: str, where: Filter | None = None) -> int:
        table = await self._table(collection)
        condition, params = where_sql(where)
        return await self._db.run(
            lambda c: c.execute(f"SELECT COUNT(*) FROM {table} WHERE {condition}", params).fetchone()[0]
        )

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None:
        check_sort([(f, 1) for f in fields])
        table = await self._table(collection)
        name = f"ix_{table}_{'_'.join(f.replace('.', '_') for f in fields)}"
        columns = ", ".join(_path(f) for f in fields)
        await self._db.run(
            lambda c: c.execute(
                f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {name} ON {table} ({columns})"
            )
        )

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        """Each source table renamed to its target in one transaction, with the target's indexes rebuilt on it
        under their own names (readers in other processes see the old tables or the new ones, never a mix)."""
        pairs = [(await self._table(target), await self._table(source)) for target, source in replacements.items()]

        indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL"

        def swap(conn: sqlite3.Connection) -> None:
            for target, source in pairs:
                kept = [sql for _, sql in conn.execute(indexes, (target,)).fetchall()]
                for name, _ in conn.execute(indexes, (source,)).fetchall():
                    conn.execute(f"DROP INDEX {name}")
                conn.execute(f"DROP TABLE {target}")
                conn.execute(f"ALTER TABLE {source} RENAME TO {target}")
                for sql in kept:  # the same statement names the same table: the renamed one now
                    conn.execute(sql)

        await self._db.run(lambda c: transaction(c, swap))
        self._tables.difference_update(source for _, source in pairs)

    async def drop_collection(self, collection: str) -> None:
        table = f"docs_{check_collection(collection)}"
        await self._db.run(lambda c: c.execute(f"DROP TABLE IF EXISTS {table}"))
        self._tables.discard(table)

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        """The documents written as JSON by pydantic's serialiser (several times faster than the json module's),
        in one executemany per statement."""
        table = await self._table(collection)
        upserts = [(doc_id, to_json(doc).decode()) for doc_id, doc in documents.items() if doc is not None]
        deletes = [(doc_id,) for doc_id, doc in documents.items() if doc is None]

        def apply(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT INTO {table} (id, body) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                upserts,
            )
            conn.executemany(f"DELETE FROM {table} WHERE id = ?", deletes)

        try:
            await self._db.run(lambda c: transaction(c, apply))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(str(exc)) from exc

    async def ping(self) -> None:
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._db.close()


# ---- bus ----


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes (unlike hash()): same key, same partition."""
    return zlib.crc32(key.encode()) % partitions


def _history_bounds(
    topics: Sequence[str], until: Offsets, after: Offsets | None
) -> dict[tuple[str, int], tuple[int, int]]:
    """(after, until] per partition of `topics` that has something in between."""
    after = after or {}
    spans = {tp: (after.get(tp, -1), last) for tp, last in until.items() if tp[0] in topics}
    return {tp: span for tp, span in spans.items() if span[1] > span[0]}


class SqliteEventBus:
    """Topics as rows of one log table, split into partitions by key, consumed by groups.

    Members of a group share the partitions by a heartbeat table; a member that stops beating
    for `session_timeout` seconds loses its partitions to the others.
    """

    def __init__(
        self, db: SqliteDatabase, *, partitions: int = 4, poll_interval: float = 0.05, session_timeout: float = 3.0
    ) -> None:
        self._db = db
        self.partitions = partitions
        self.poll_interval = poll_interval
        self.session_timeout = session_timeout
        self._appended = asyncio.Event()
        self._ready = False

    async def _setup(self) -> None:
        if self._ready:
            return
        await self._db.run(
            lambda c: c.executescript(
                """
                CREATE TABLE IF NOT EXISTS messages (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    key TEXT NOT NULL, value BLOB NOT NULL, headers TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS messages_by_partition ON messages (topic, partition, seq);
                CREATE TABLE IF NOT EXISTS offsets (
                    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_seq INTEGER NOT NULL,
                    PRIMARY KEY (grp, topic, partition)
                );
                CREATE TABLE IF NOT EXISTS members (
                    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat REAL NOT NULL,
                    PRIMARY KEY (grp, member)
                );
                """
            )
        )
        self._ready = True

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._setup()
        rows = [
            (
                m.topic,
                partition_of(m.key, self.partitions),
                m.key,
                m.value,
                json.dumps([(k, v.hex()) for k, v in m.headers]),
            )
            for m in messages
        ]
        await self._db.run(
            lambda c: transaction(
                c,
                lambda c: c.executemany(
                    "INSERT INTO messages (topic, partition, key, value, headers) VALUES (?,?,?,?,?)", rows
                ),
            )
        )
        self._appended.set()

    def subscribe(self, group: str, topics: Sequence[str], handler: MessageHandler) -> "SqliteSubscription":
        return SqliteSubscription(self, group, list(topics), handler, batched=False)

    def subscribe_batches(
        self, group: str, topics: Sequence[str], handler: BatchHandler, *, concurrent: bool = False, batch: int = 500
    ) -> "SqliteSubscription":
        return SqliteSubscription(self, group, list(topics), handler, batched=True, concurrent=concurrent, batch=batch)

    async def wait_for_messages(self) -> None:
        """Until a publish in this process, or the poll interval (another process may have published)."""
        self._appended.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation racing its timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self._appended.wait()

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """The group's committed lag per partition: messages at or after its committed offset."""
        pairs = [(t, p) for t in topics for p in range(self.partitions)]

        def count(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
            lags = {}
            for topic, partition in pairs:
                row = conn.execute(
                    "SELECT next_seq FROM offsets WHERE grp = ? AND topic = ? AND partition = ?",
                    (group, topic, partition),
                ).fetchone()
                lags[(topic, partition)] = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE topic = ? AND partition = ? AND seq >= ?",
                    (topic, partition, row[0] if row else 0),
                ).fetchone()[0]
            return lags

        return await self.run(count)

    async def last_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        pairs = [(t, p) for t in topics for p in range(self.partitions)]

        def read(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
            sql = "SELECT COALESCE(MAX(seq), -1) FROM messages WHERE topic = ? AND partition = ?"
            return {pair: conn.execute(sql, pair).fetchone()[0] for pair in pairs}

        return await self.run(read)

    async def history_size(self, topics: Sequence[str], until: Offsets, after: Offsets | None = None) -> int:
        bounds = _history_bounds(topics, until, after)

        def count(conn: sqlite3.Connection) -> int:
            sql = "SELECT COUNT(*) FROM messages WHERE topic = ? AND partition = ? AND seq > ? AND seq <= ?"
            return sum(conn.execute(sql, (*tp, *span)).fetchone()[0] for tp, span in bounds.items())

        return await self.run(count)

    async def history(
        self, topics: Sequence[str], until: Offsets, after: Offsets | None = None, *, batch: int = 5000
    ) -> AsyncGenerator[list[Message], None]:
        """In the log's order (one order across topics: the order of publication); the next batch is read in
        the database's thread while the caller handles this one."""
        bounds = _history_bounds(topics, until, after)
        if not bounds:
            return
        start, end = min(first for first, _ in bounds.values()), max(last for _, last in bounds.values())
        wanted = sorted({topic for topic, _ in bounds})
        # NOT INDEXED: walk the log by seq (the rowid), never sort a topic index's rows for each batch
        sql = (
            "SELECT seq, topic, partition, key, value FROM messages NOT INDEXED "
            f"WHERE seq > ? AND seq <= ? AND topic IN ({','.join('?' * len(wanted))}) ORDER BY seq LIMIT ?"
        )

        def fetch(cursor: int, conn: sqlite3.Connection) -> tuple[list[Message], int | None]:
            rows = conn.execute(sql, (cursor, end, *wanted, batch)).fetchall()
            messages = []
            for seq, topic, partition, key, value in rows:
                first, last = bounds.get((topic, partition), (0, -1))
                if first < seq <= last:
                    messages.append(Message(topic, key, value, (), partition, seq))
            return messages, (rows[-1][0] if len(rows) == batch else None)

        reading: asyncio.Future[tuple[list[Message], int | None]] | None = asyncio.ensure_future(
            self.run(partial(fetch, start))
        )
        try:
            while reading is not None:
                messages, cursor = await reading
                reading = None if cursor is None else asyncio.ensure_future(self.run(partial(fetch, cursor)))
                if messages:
                    yield messages
        finally:
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(BaseException):
                    await reading

    async def ping(self) -> None:
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._db.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self._setup()
        return await self._db.run(fn)


class SqliteSubscription:
    def __init__(
        self,
        bus: SqliteEventBus,
        group: str,
        topics: list[str],
        handler: MessageHandler | BatchHandler,
        *,
        batched: bool,
        concurrent: bool = False,
        batch: int = 500,
    ) -> None:
        self.bus, self.group, self.topics, self.handler, self.batched = bus, group, topics, handler, batched
        self.concurrent = concurrent
        self.batch = batch
        self._closing = asyncio.Event()
        self.member = new_id()
        self._task: Supervised | None = None
        self._beating: Supervised | None = None
        self._owned: set[tuple[str, int]] = set()

    async def start(self) -> None:
        await self._heartbeat()
        # beats on its own: a long batch must not cost the member its partitions
        self._beating = start_supervised(self._beat, name=f"heartbeat:{self.group}")
        self._closing.clear()
        self._task = start_supervised(self._loop, name=f"consumer:{self.group}")

    async def stop(self) -> None:
        await finish(self._task, self._closing)
        await cancel(self._beating)
        self._task = self._beating = None
        # leave the group at once so the other members take over without waiting for the timeout
        await self.bus.run(
            lambda c: c.execute("DELETE FROM members WHERE grp = ? AND member = ?", (self.group, self.member))
        )

    def assignment(self) -> set[tuple[str, int]]:
        return set(self._owned)

    def status(self) -> str:
        return self._task.status() if self._task is not None else "failed: not started"

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.bus.session_timeout / 3)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        now, timeout = time.time(), self.bus.session_timeout
        partitions = self.bus.partitions

        def beat(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "INSERT OR REPLACE INTO members (grp, member, heartbeat) VALUES (?,?,?)", (self.group, self.member, now)
            )
            conn.execute("DELETE FROM members WHERE grp = ? AND heartbeat < ?", (self.group, now - timeout))
            return [
                r[0] for r in conn.execute("SELECT member FROM members WHERE grp = ? ORDER BY member", (self.group,))
            ]

        members = await self.bus.run(lambda c: transaction(c, beat))
        index, size = members.index(self.member), len(members)
        self._owned = {(t, p) for t in self.topics for p in range(partitions) if p % size == index}

    async def _loop(self) -> None:
        while not self._closing.is_set():
            polled = await self._poll(sorted(self._owned))
            # partition p of every topic holds the same aggregates (co-partitioning, ADR 0002): each number in
            # order, topic after topic; different numbers side by side if the subscriber allows it
            same_partition: dict[int, list[list[Message]]] = {}
            for messages in polled:
                same_partition.setdefault(messages[0].partition if self.concurrent else 0, []).append(messages)
            async with asyncio.TaskGroup() as partitions:
                for batches in same_partition.values():
                    partitions.create_task(self._hand_over_each(batches))
            if not polled:
                await self.bus.wait_for_messages()

    async def _hand_over_each(self, batches: list[list[Message]]) -> None:
        for messages in batches:
            await hand_over(messages, self.handler, self.batched, partial(self._commit, messages[0]))

    async def _poll(self, owned: list[tuple[str, int]]) -> list[list[Message]]:
        """The next messages of each owned partition, in one visit to the database."""

        def fetch(conn: sqlite3.Connection) -> list[list[Message]]:
            committed = {
                (topic, partition): next_seq
                for topic, partition, next_seq in conn.execute(
                    "SELECT topic, partition, next_seq FROM offsets WHERE grp = ?", (self.group,)
                )
            }
            polled = []
            for topic, partition in owned:
                rows = conn.execute(
                    "SELECT seq, key, value, headers FROM messages WHERE topic = ? AND partition = ? AND seq >= ? "
                    "ORDER BY seq LIMIT ?",
                    (topic, partition, committed.get((topic, partition), 0), self.batch),
                ).fetchall()
                if rows:
                    polled.append(
                        [
                            Message(
                                topic=topic,
                                key=key,
                                value=value,
                                headers=tuple((k, bytes.fromhex(v)) for k, v in json.loads(headers)),
                                partition=partition,
                                offset=seq,
                            )
                            for seq, key, value, headers in rows
                        ]
                    )
            return polled

        return await self.bus.run(fetch)

    async def _commit(self, first: Message, next_seq: int) -> None:
        # MAX: a member that lost the partition during a rebalance never moves the offset back
        await self.bus.run(
            lambda c: c.execute(
                "INSERT INTO offsets (grp, topic, partition, next_seq) VALUES (?,?,?,?) "
                "ON CONFLICT (grp, topic, partition) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)",
                (self.group, first.topic, first.partition, next_seq),
            )
        )
