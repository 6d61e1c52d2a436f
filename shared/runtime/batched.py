"""Read models written in batches: what a consumer writes while it handles a batch of events is kept in
memory, read back from there, and applied in one round trip (one transaction, one bulk write).

Outside a batch, and in any task but the consumer's, the store writes through at once (tasks a handler
starts inherit its batch: they must end before it does).
A read that the memory cannot answer alone (a query, a count), an insert (a claim, answered at once) and
an append to the event store apply the pending writes first, so a handler sees its own writes and its
events never get ahead of its documents. `add` is an insert that waits with the batch: a document already
there fails the batch's write (DuplicateKeyError), and the runner then handles the batch's events again one
at a time, outside any batch, where it raises at once.
"""

import contextlib
from collections.abc import AsyncIterator, Callable, Container, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from shared.events import Envelope
from shared.runtime.ports import (
    AppendSignal,
    DocumentStore,
    EventStore,
    Filter,
    Sort,
    Unpublished,
    Write,
)

Pending = dict[tuple[str, str], Write]


class BatchedDocuments:
    """A document store whose writes, inside `batch()`, wait in memory until `flush`."""

    def __init__(self, documents: DocumentStore) -> None:
        self.inner = documents
        self._pending: ContextVar[Pending | None] = ContextVar("pending_writes", default=None)
        self._then: ContextVar[list[Callable[[], None]] | None] = ContextVar("after_flush", default=None)

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Keep this task's writes in memory until `flush`; what was not flushed on leaving is dropped
        (the batch failed: its events are delivered again)."""
        token, then = self._pending.set({}), self._then.set([])
        try:
            yield
        finally:
            self._pending.reset(token)
            self._then.reset(then)

    async def add(self, collection: str, doc_id: str, doc: Mapping[str, Any], then: Callable[[], None]) -> None:
        """Insert a document, then call `then`: at once outside a batch (DuplicateKeyError if it is there), once
        the batch's writes are applied inside one (see the module's docstring)."""
        pending, after = self._pending.get(), self._then.get()
        if pending is None or after is None:
            await self.inner.insert(collection, doc_id, doc)
            then()
            return
        pending[(collection, doc_id)] = Write(collection, doc_id, _copy(doc), insert_only=True)
        after.append(then)

    async def flush(self) -> None:
        """Apply this task's pending writes in one round trip (nothing to do outside a batch), then call what
        waited for them (`add`)."""
        pending, after = self._pending.get() or {}, self._then.get() or []
        # taken before the round trip: tasks of the batch handling other keys may add writes meanwhile
        writes, waiting = list(pending.values()), list(after)
        pending.clear()
        after.clear()
        try:
            if writes:
                await self.inner.write(writes)
        except BaseException:  # kept for a retry of the flush, behind any newer write of the same document
            for write in writes:
                pending.setdefault((write.collection, write.doc_id), write)
            after[:0] = waiting
            raise
        for then in waiting:
            then()

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        pending = self._pending.get()
        if pending is not None and (write := pending.get((collection, doc_id))) is not None:
            return None if write.doc is None else _copy(write.doc)
        return await self.inner.get(collection, doc_id)

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        pending = self._pending.get()
        if pending is None:
            return await self.inner.put(collection, doc_id, doc)
        pending[(collection, doc_id)] = Write(collection, doc_id, _copy(doc))

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        # an insert claims an id or a unique value: its caller must learn at once whether it got it
        await self.flush()
        await self.inner.insert(collection, doc_id, doc)

    async def delete(self, collection: str, doc_id: str) -> bool:
        pending = self._pending.get()
        if pending is None:
            return await self.inner.delete(collection, doc_id)
        existed = await self.get(collection, doc_id) is not None
        pending[(collection, doc_id)] = Write(collection, doc_id, None)
        return existed

    async def write(self, writes: Sequence[Write]) -> None:
        await self.flush()
        await self.inner.write(writes)

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        await self.flush()
        return await self.inner.find(collection, where, sort=sort, limit=limit, skip=skip)

    async def count(self, collection: str, where: Filter | None = None) -> int:
        await self.flush()
        return await self.inner.count(collection, where)

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None:
        await self.flush()
        await self.inner.ensure_index(collection, fields, unique=unique)

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        await self.flush()
        await self.inner.replace_collections(replacements)

    async def drop_collection(self, collection: str) -> None:
        await self.flush()
        await self.inner.drop_collection(collection)

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        await self.flush()
        await self.inner.load(collection, documents, unseen=unseen)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class DocumentsFirst:
    """An event store that applies the pending writes of its service's batch before each append."""

    def __init__(self, store: EventStore, documents: BatchedDocuments) -> None:
        self.inner, self.documents = store, documents
        self.appended: AppendSignal = store.appended

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        await self.documents.flush()
        await self.inner.append(stream_id, expected_version, events)

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        return await self.inner.read(stream_id, after_version)

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        return await self.inner.unpublished(limit)

    async def mark_published(self, batches: Sequence[Unpublished]) -> None:
        await self.inner.mark_published(batches)

    async def backlog(self) -> int:
        return await self.inner.backlog()

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def _copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    # handlers change the dicts they get: what waits in memory must not change with them
    return {k: _copy_value(v) for k, v in doc.items()}


def _copy_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _copy(value)
    if isinstance(value, list | tuple):
        return [_copy_value(v) for v in value]
    return value
