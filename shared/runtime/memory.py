"""In-memory event store and document store: the ports' contract kept in a process's memory.

For unit tests of the handler layer (no file, no server); the contract suite runs them beside
the SQLite and MongoDB adapters, so they answer what the real ones answer.
"""

import copy
import json
from collections import defaultdict
from collections.abc import Container, Mapping, Sequence
from functools import partial
from typing import Any

from shared.events import Envelope
from shared.runtime.ports import (
    AppendSignal,
    ConcurrencyError,
    Condition,
    DuplicateKeyError,
    Filter,
    Sort,
    Unpublished,
    Write,
    check_batch,
    check_collection,
    check_sort,
    parse_filter,
    write_one_by_one,
)

MISSING = object()


class InMemoryEventStore:
    """Streams of envelopes with optimistic concurrency, and an outbox of what is not yet published."""

    def __init__(self) -> None:
        self.appended = AppendSignal()
        self._streams: dict[str, list[Envelope]] = defaultdict(list)
        self._outbox: list[tuple[int, Envelope]] = []
        self._seq = 0

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        check_batch(stream_id, expected_version, events)
        stream = self._streams[stream_id]
        if len(stream) != expected_version:
            raise ConcurrencyError(stream_id, expected_version, len(stream))
        stream.extend(events)
        for event in events:
            self._seq += 1
            self._outbox.append((self._seq, event))
        self.appended.notify()

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        return list(self._streams.get(stream_id, [])[after_version:])

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        return [Unpublished(seq, (event,)) for seq, event in self._outbox[:limit]]

    async def mark_published(self, batches: Sequence[Unpublished]) -> None:
        done = {batch.token for batch in batches}
        self._outbox = [(seq, event) for seq, event in self._outbox if seq not in done]

    async def backlog(self) -> int:
        return len(self._outbox)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class InMemoryDocumentStore:
    """Collections of JSON documents, queried with the filter subset both real stores answer."""

    def __init__(self) -> None:
        self._collections: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._unique: dict[str, list[tuple[str, ...]]] = defaultdict(list)

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        found = self._docs(collection).get(doc_id)
        return copy.deepcopy(found) if found is not None else None

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        self._check_unique(collection, doc_id, doc)
        self._docs(collection)[doc_id] = _stored(doc)

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        if doc_id in self._docs(collection):
            raise DuplicateKeyError(f"{collection}/{doc_id}")
        await self.put(collection, doc_id, doc)

    async def delete(self, collection: str, doc_id: str) -> bool:
        return self._docs(collection).pop(doc_id, None) is not None

    async def write(self, writes: Sequence[Write]) -> None:
        saved = {c: dict(self._docs(c)) for c in {w.collection for w in writes}}
        try:  # all or none, as the embedded store's transaction
            await write_one_by_one(self, writes)
        except BaseException:
            self._collections.update(saved)
            raise

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        conditions = parse_filter(where)
        check_sort(sort)
        found = [doc for doc in self._docs(collection).values() if all(_holds(doc, c) for c in conditions)]
        for name, direction in reversed(sort):
            found.sort(key=partial(_sort_key_of, name), reverse=direction == -1)
        found = found[skip:]
        return copy.deepcopy(found[:limit] if limit else found)

    async def count(self, collection: str, where: Filter | None = None) -> int:
        return len(await self.find(collection, where))

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None:
        check_collection(collection)
        if unique and tuple(fields) not in self._unique[collection]:
            self._unique[collection].append(tuple(fields))

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        for target, source in replacements.items():
            self._collections[check_collection(target)] = self._collections.pop(check_collection(source), {})
            self._unique.pop(source, None)  # the target keeps its own unique indexes

    async def drop_collection(self, collection: str) -> None:
        self._collections.pop(check_collection(collection), None)
        self._unique.pop(collection, None)

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        for doc_id, doc in documents.items():
            if doc is None:
                await self.delete(collection, doc_id)
            else:
                await self.put(collection, doc_id, doc)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _docs(self, collection: str) -> dict[str, dict[str, Any]]:
        return self._collections[check_collection(collection)]

    def _check_unique(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        for fields in self._unique[collection]:
            values = tuple(_value(doc, f) for f in fields)
            if all(v is MISSING for v in values):
                continue
            for other_id, other in self._docs(collection).items():
                if other_id != doc_id and tuple(_value(other, f) for f in fields) == values:
                    raise DuplicateKeyError(f"{collection}: {fields} = {values}")


def _stored(doc: Mapping[str, Any]) -> dict[str, Any]:
    # a JSON round trip: what a real store keeps (no shared references, no Python-only types)
    stored: dict[str, Any] = json.loads(json.dumps(doc))
    return stored


def _value(doc: Mapping[str, Any], path: str) -> Any:
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return MISSING
        current = current[part]
    return current


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


def _equal(found: Any, wanted: Any) -> bool:
    if wanted is None:  # MongoDB: null matches a missing field too
        return found is None or found is MISSING
    return found is not MISSING and _comparable(found, wanted) and found == wanted


def _holds(doc: Mapping[str, Any], condition: Condition) -> bool:
    found, wanted = _value(doc, condition.field), condition.value
    match condition.operator:
        case "$eq":
            return _equal(found, wanted)
        case "$ne":
            return not _equal(found, wanted)
        case "$in":
            return any(_equal(found, w) for w in wanted)
        case "$nin":
            return not any(_equal(found, w) for w in wanted)
        case "$exists":
            return (found is not MISSING) is bool(wanted)
    if wanted is None or found is MISSING or found is None or not _comparable(found, wanted):
        return False  # MongoDB: a range compares values of one type only
    match condition.operator:
        case "$gt":
            return bool(found > wanted)
        case "$gte":
            return bool(found >= wanted)
        case "$lt":
            return bool(found < wanted)
    return bool(found <= wanted)


def _sort_key_of(name: str, doc: Mapping[str, Any]) -> tuple[int, Any]:
    return _sort_key(_value(doc, name))


def _sort_key(value: Any) -> tuple[int, Any]:
    # MongoDB's order across types: missing and null, then numbers, then strings, then the rest
    if value is MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (4, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True))
