"""The three ports every service runs on; each has an embedded (SQLite) and a production adapter.

- EventStore: the source of truth, per stream, with optimistic concurrency; it is also the outbox.
- EventBus: topics with per-key order, consumer groups, at-least-once delivery.
- DocumentStore: read models, queried with a small MongoDB-compatible filter subset.
"""

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.events import Envelope


class ConcurrencyError(Exception):
    """The stream moved since the caller read it: reload and decide again."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        found = "" if actual is None else f", found {actual}"
        super().__init__(f"stream {stream_id}: expected version {expected}{found}")


class DuplicateKeyError(Exception):
    """A document with this id, or with these values of a unique index, exists already."""


class Unavailable(Exception):
    """Something a handler needs is unreachable for now (another service): the message is fine, retry it
    for as long as the outage lasts rather than spending its attempts (see `consumers.is_transient`)."""


class StreamBusy(Unavailable, ConcurrencyError):
    """The next version is claimed by a writer whose events are not there: one in the middle of its append,
    or one that died between its two writes (MongoDB protocol, ADR 0006), whose claim the relay clears
    after a while. The stream did not move: retry later rather than take it for a concurrent success
    (an HTTP answer says 503, not 409: Unavailable comes first)."""


class HistoryLost(LookupError):
    """The bus no longer holds records a replay asks for (a retention deleted them): the read models it would
    rebuild would miss their events."""


class UnsupportedFilter(ValueError):
    """A filter outside the subset both document stores answer identically."""


@dataclass(frozen=True)
class Unpublished:
    """Events appended together and not yet published, with the store's token to mark them."""

    token: Any
    events: tuple[Envelope, ...]


class AppendSignal:
    """Wakes this process's relay when this process appends; other processes' appends wait for its poll."""

    def __init__(self) -> None:
        self._appended = asyncio.Event()

    def notify(self) -> None:
        self._appended.set()

    def reset(self) -> None:
        """Call before looking for unpublished events: an append from then on ends the next `wait`."""
        self._appended.clear()

    async def wait(self, at_most_s: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation racing its timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._appended.wait()


class EventStore(Protocol):
    appended: AppendSignal

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        """Append events at `expected_version + 1...`, all or none; ConcurrencyError if the stream moved."""
        ...

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        """The stream's events after a version, in order."""
        ...

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        """Appends not yet published, in order within each stream."""
        ...

    async def mark_published(self, batches: Sequence[Unpublished]) -> None: ...

    async def backlog(self) -> int:
        """How many events wait for the relay."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, envelope: Envelope) -> "OutgoingMessage":
        """An event as a record: on its topic, keyed by its stream (per-aggregate order)."""
        return cls(envelope.topic, envelope.stream_id, envelope.to_json(), tuple(envelope.headers()))


@dataclass(frozen=True)
class Message:
    """A record as delivered to a consumer group."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int


MessageHandler = Callable[[Message], Awaitable[None]]
BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
Offsets = Mapping[tuple[str, int], int]  # per (topic, partition)


async def hand_over(
    messages: Sequence[Message],
    handler: MessageHandler | BatchHandler,
    batched: bool,
    commit: Callable[[int], Awaitable[None]],
) -> None:
    """Give one partition's messages to a subscriber, then commit the offset after the last one it finished.

    A batch handler gets them all at once and commits all or nothing; a message handler gets them one by
    one, and a raising handler leaves the offset after the last message it returned from.
    """
    if batched:
        await handler(messages)  # type: ignore[arg-type]
        await commit(messages[-1].offset + 1)
        return
    handled = None
    try:
        for message in messages:
            await handler(message)  # type: ignore[arg-type]
            handled = message.offset
    finally:
        if handled is not None:
            await commit(handled + 1)


class Subscription(Protocol):
    group: str

    async def start(self) -> None:
        """Join the group and deliver messages in the background until `stop`."""
        ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member currently owns."""
        ...

    def status(self) -> str:
        """Either "ok" while the member's delivery task runs, or why not (crashed and restarting, stopped)."""
        ...


class EventBus(Protocol):
    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Return once every message is durably stored by the bus; same key → same partition, in order."""
        ...

    def subscribe(self, group: str, topics: Sequence[str], handler: MessageHandler) -> Subscription:
        """A member of `group`; the handler is awaited message by message within a partition and
        offsets are committed after it returns (after a raising handler, the member's delivery task is
        restarted with backoff and delivers again from the group's committed offsets)."""
        ...

    def subscribe_batches(
        self, group: str, topics: Sequence[str], handler: BatchHandler, *, concurrent: bool = False, batch: int = 500
    ) -> Subscription:
        """As `subscribe`, but the handler gets what one poll brought of a partition (at most `batch` records), in
        order, and the offset after the batch is committed once it returns. The member's partitions are handled
        one after the other or, when `concurrent`, partition numbers side by side (partition p of every topic
        still in order)."""
        ...

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """Per (topic, partition) of `topics`: records `group` has not committed yet (high-water mark minus
        the group's committed offset; everything the partition holds when the group never committed).
        Answers whether or not a member of the group is running."""
        ...

    async def last_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """Per (topic, partition) of `topics`: the offset of the last record it holds (-1 when it holds none)."""
        ...

    async def history_size(self, topics: Sequence[str], until: Offsets, after: Offsets | None = None) -> int:
        """How many records `history` delivers with these bounds."""
        ...

    def history(
        self, topics: Sequence[str], until: Offsets, after: Offsets | None = None
    ) -> AsyncGenerator[list[Message], None]:
        """The records of `topics` stored after the offsets `after` (from the start of a partition it does not
        name) up to the offsets `until` (inclusive; nothing of a partition it does not name), for a replay of
        read models: no consumer group, nothing committed, no headers (the envelope says everything). Each
        batch keeps every partition's order, and batches follow the order the records were stored in across
        partitions as far as the bus knows it (the log's order embedded, record timestamps on Kafka).
        HistoryLost when records it should deliver are gone."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


Filter = Mapping[str, Any]
Sort = Sequence[tuple[str, int]]


@dataclass(frozen=True)
class Write:
    """One change of a batch of writes: a put (insert or replace), an insert only, or a delete (no doc)."""

    collection: str
    doc_id: str
    doc: Mapping[str, Any] | None
    insert_only: bool = False


class DocumentStore(Protocol):
    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Insert or replace; DuplicateKeyError when a unique index refuses it."""
        ...

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Insert only; DuplicateKeyError when the id (or a unique index value) exists."""
        ...

    async def delete(self, collection: str, doc_id: str) -> bool: ...

    async def write(self, writes: Sequence[Write]) -> None:
        """Apply writes in their order in one round trip (one transaction embedded, one ordered bulk write on
        MongoDB, where the writes before a failing one stay: each is idempotent, retry them all).
        DuplicateKeyError when an insert-only finds its id taken or a unique index refuses a document."""
        ...

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]: ...

    async def count(self, collection: str, where: Filter | None = None) -> int: ...

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None: ...

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        """For each target → source: the target's documents become the source's, keeping the target's indexes,
        and the source is gone; all at once where the store can (one transaction embedded; on MongoDB one
        atomic rename per collection, two renames on FerretDB 1.x). A source that does not exist empties its
        target."""
        ...

    async def drop_collection(self, collection: str) -> None:
        """Remove a collection, its documents and its indexes (nothing happens when it does not exist)."""
        ...

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        """Write many documents of a collection no one else writes (a read model being rebuilt) as fast as the
        store can: each id's document inserted or replaced, deleted where it is None; the ids in `unseen` are
        known not to be there yet. One transaction embedded; on MongoDB, unordered bulk writes (the ids are
        distinct: their order does not matter) with inserts for the unseen ids."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# a read model's reaction to one event: it writes the documents of its read models through the store it is given
Projection = Callable[["DocumentStore", Any, Envelope], Awaitable[None]]


async def write_one_by_one(documents: DocumentStore, writes: Sequence[Write]) -> None:
    """Apply a batch of writes with the store's single-document calls, in order."""
    for w in writes:
        if w.doc is None:
            await documents.delete(w.collection, w.doc_id)
        elif w.insert_only:
            await documents.insert(w.collection, w.doc_id, w.doc)
        else:
            await documents.put(w.collection, w.doc_id, w.doc)


def check_batch(stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
    """An append must be non-empty, of one stream, numbered on from the expected version."""
    if not events:
        raise ValueError("nothing to append")
    for offset, event in enumerate(events, start=1):
        if event.stream_id != stream_id or event.stream_version != expected_version + offset:
            raise ValueError(
                f"event {event.type} is {event.stream_id}@{event.stream_version}, "
                f"expected {stream_id}@{expected_version + offset}"
            )


# ---- the filter subset, checked the same way for both document stores ----

FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SCALARS = (str, int, float, bool, type(None))
OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: Any = None


def parse_filter(where: Filter | None) -> list[Condition]:
    """Check a filter against the supported subset and flatten it into conditions (all must hold).

    Supported: `{"a": v}`, `{"a.b": {"$ne": v}}`, `$in`/`$nin` lists, `$gt $gte $lt $lte`,
    `$exists: bool`, on scalar values (str, int, float, bool, None).
    """
    conditions = []
    for name, spec in (where or {}).items():
        if not isinstance(name, str) or not FIELD.match(name):
            raise UnsupportedFilter(f"field name {name!r}")
        operators = spec if isinstance(spec, Mapping) and any(str(k).startswith("$") for k in spec) else {"$eq": spec}
        for op, value in operators.items():
            if op not in OPERATORS:
                raise UnsupportedFilter(f"operator {op}")
            if op in ("$in", "$nin"):
                if not isinstance(value, list | tuple) or not all(isinstance(v, SCALARS) for v in value):
                    raise UnsupportedFilter(f"{op} takes a list of scalars")
                value = list(value)
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise UnsupportedFilter("$exists takes true or false")
            elif not isinstance(value, SCALARS):
                raise UnsupportedFilter(f"{name}: only scalar values can be compared")
            conditions.append(Condition(name, op, value))
    return conditions


def check_sort(sort: Sort) -> None:
    """Reject sort keys outside the subset: dotted field names, direction 1 or -1."""
    for name, direction in sort:
        if not FIELD.match(name) or direction not in (1, -1):
            raise UnsupportedFilter(f"sort by {name!r} {direction!r}")


def check_collection(name: str) -> str:
    """Collection names become SQL table and MongoDB collection names: keep them plain."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise ValueError(f"collection name {name!r}: lower-case letters, digits and _ only")
    return name
