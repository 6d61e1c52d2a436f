"""Production adapters on a MongoDB-protocol server (MongoDB or FerretDB 1.x) through PyMongo's async API.

FerretDB 1.x has no multi-document transactions, so an append is ONE document (a "commit") that
holds the whole batch: atomic by construction. Its id is `<stream>:<first version>`.

A stream is read in one query on its indexed `stream_id` (the equality a MongoDB-protocol server answers
from an index; FerretDB on PostgreSQL too, with the GIN twins of scripts/infra), never by scanning (ADR 0006):
- an append's head check is free when the expected version is one this process saw end a commit (or 0): the
  ids of the claim and the commit, `<stream>:<expected + 1>`, then collide with any concurrent append;
- the outbox is a collection of its own, holding only what is not published yet (small), with the
  commit's id. An append inserts the outbox entry first, then the commit: two writers racing for a
  version collide on the outbox id (ConcurrencyError). A writer that dies between the two leaves an
  orphan entry, which the relay drops once it is older than `ORPHAN_AFTER` (the version then frees).
"""

import asyncio
import json
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.errors import DuplicateKeyError as MongoDuplicateKeyError

from shared.events import Envelope
from shared.runtime.metrics import count_appended
from shared.runtime.ports import (
    AppendSignal,
    ConcurrencyError,
    DuplicateKeyError,
    Filter,
    Sort,
    StreamBusy,
    Unpublished,
    Write,
    check_batch,
    check_collection,
    check_sort,
    parse_filter,
    write_one_by_one,
)

Document = dict[str, Any]
COMMITS, OUTBOX = "event_commits", "event_outbox"
ORPHAN_AFTER = timedelta(seconds=30)
# writes per bulk command: a server may hold something per write until the command ends (FerretDB 1.24 holds a
# PostgreSQL connection per replaced document), so every consumer flushing at once must fit in its pool
BULK_WRITES_AT_ONCE = 16
NOT_IMPLEMENTED, NAMESPACE_NOT_FOUND = 238, 26  # server error codes


class MongoEventStore:
    def __init__(self, db: AsyncDatabase[Document], service: str) -> None:
        self.service = service
        self._commits, self._outbox = db[COMMITS], db[OUTBOX]
        self._db = db
        self.appended = AppendSignal()
        self._heads: dict[str, int] = {}  # stream → last version of the newest commit this process saw
        self._indexed = False

    async def _chain(self, stream_id: str, after_version: int = 0) -> list[Document]:
        """The commits of a stream holding versions after `after_version`, in order: one indexed query."""
        if not self._indexed:  # once a process; create_index is idempotent
            await self._commits.create_index([("stream_id", ASCENDING), ("last", ASCENDING)], name="stream_last")
            self._indexed = True
        found = sorted(
            await self._commits.find({"stream_id": stream_id, "last": {"$gt": after_version}}).to_list(),
            key=lambda commit: commit["first"],
        )
        if found:
            self._heads[stream_id] = max(self._heads.get(stream_id, 0), found[-1]["last"])
        return found

    async def _written(self, commit_id: str) -> bool:
        """Whether the commit of a claimed version is there; a live writer between its claim and its commit
        gets a moment (about a second in all) to write it, a dead one never will."""
        for pause in (0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64):
            await asyncio.sleep(pause)
            if await self._commits.find_one({"_id": commit_id}, {"_id": 1}) is not None:
                return True
        return False

    async def _at_a_boundary(self, stream_id: str, version: int) -> bool:
        """Whether a commit ends at `version`: only then do the ids of the claim and the commit collide with any
        later append (a version inside a commit of several events would not)."""
        if version == 0 or self._heads.get(stream_id) == version:
            return True
        found = await self._commits.find_one({"stream_id": stream_id, "last": version}, {"_id": 1})
        return found is not None

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        check_batch(stream_id, expected_version, events)
        if not await self._at_a_boundary(stream_id, expected_version):
            raise ConcurrencyError(stream_id, expected_version)
        commit_id, now = f"{stream_id}:{expected_version + 1}", datetime.now(UTC)
        entry = {"stream_id": stream_id, "first": expected_version + 1, "size": len(events), "recorded_at": now}
        try:
            await self._outbox.insert_one({"_id": commit_id, **entry})
        except MongoDuplicateKeyError as exc:
            if not await self._written(commit_id):
                raise StreamBusy(stream_id, expected_version) from exc  # claimed and never written
            raise ConcurrencyError(stream_id, expected_version) from exc
        commit = {
            "_id": commit_id,
            "stream_id": stream_id,
            "first": expected_version + 1,
            "last": expected_version + len(events),
            "size": len(events),
            # envelopes as JSON text: FerretDB refuses nested arrays and keys with '.' or '$'
            "events": [e.model_dump_json() for e in events],
            "recorded_at": now,
        }
        try:
            await self._commits.insert_one(commit)
        except MongoDuplicateKeyError as exc:
            # the version was taken and published meanwhile (its outbox entry gone): ours is an orphan
            await self._outbox.delete_one({"_id": commit_id})
            raise ConcurrencyError(stream_id, expected_version) from exc
        if datetime.now(UTC) - now > ORPHAN_AFTER / 2:  # so slow the relay may have dropped our entry: restore it
            await self._outbox.replace_one({"_id": commit_id}, entry, upsert=True)
        self._heads[stream_id] = max(self._heads.get(stream_id, 0), expected_version + len(events))
        self.appended.notify()
        count_appended(self.service, events)

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        envelopes = [
            Envelope.model_validate_json(raw)
            for commit in await self._chain(stream_id, after_version)
            for raw in commit["events"]
        ]
        return [e for e in envelopes if e.stream_version > after_version]

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        entries = sorted(await self._outbox.find({}).to_list(), key=lambda e: (e["stream_id"], e["first"]))[:limit]
        # by `_id` each (what every MongoDB-protocol server finds by index), side by side: one wait, not one each
        commits = await asyncio.gather(*(self._commits.find_one({"_id": entry["_id"]}) for entry in entries))
        found: list[Unpublished] = []
        blocked: set[str] = set()  # a stream waits behind its first entry whose commit is not there
        for entry, commit in zip(entries, commits, strict=True):
            if entry["stream_id"] in blocked:
                continue
            if commit is None:
                blocked.add(entry["stream_id"])
                recorded = entry["recorded_at"].replace(tzinfo=UTC)
                if datetime.now(UTC) - recorded > ORPHAN_AFTER:  # its writer died before the commit
                    await self._outbox.delete_one({"_id": entry["_id"]})
                continue
            found.append(
                Unpublished(token=entry["_id"], events=tuple(Envelope.model_validate_json(r) for r in commit["events"]))
            )
        return found

    async def mark_published(self, batches: Sequence[Unpublished]) -> None:
        if batches:
            await self._outbox.delete_many({"_id": {"$in": [b.token for b in batches]}})

    async def backlog(self) -> int:
        return sum(entry["size"] for entry in await self._outbox.find({}, {"size": 1}).to_list())

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        """The client belongs to the backend, which closes it."""


class MongoDocumentStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db

    def _coll(self, collection: str) -> AsyncCollection[Document]:
        return self._db[check_collection(collection)]

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return await self._coll(collection).find_one({"_id": doc_id}, {"_id": 0})

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        try:
            await self._coll(collection).replace_one({"_id": doc_id}, _plain(doc), upsert=True)
        except MongoDuplicateKeyError as exc:
            raise DuplicateKeyError(f"{collection}/{doc_id}") from exc

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        try:
            await self._coll(collection).insert_one({**_plain(doc), "_id": doc_id})
        except MongoDuplicateKeyError as exc:
            raise DuplicateKeyError(f"{collection}/{doc_id}") from exc

    async def delete(self, collection: str, doc_id: str) -> bool:
        return (await self._coll(collection).delete_one({"_id": doc_id})).deleted_count > 0

    async def write(self, writes: Sequence[Write]) -> None:
        by_collection: dict[str, list[DeleteOne | InsertOne[Document] | ReplaceOne[Document]]] = {}
        for w in writes:
            requests = by_collection.setdefault(w.collection, [])
            if w.doc is None:
                requests.append(DeleteOne({"_id": w.doc_id}))
            elif w.insert_only:
                requests.append(InsertOne({**_plain(w.doc), "_id": w.doc_id}))
            else:
                requests.append(ReplaceOne({"_id": w.doc_id}, _plain(w.doc), upsert=True))
        for collection, requests in by_collection.items():
            try:
                for start in range(0, len(requests), BULK_WRITES_AT_ONCE):
                    await self._coll(collection).bulk_write(requests[start : start + BULK_WRITES_AT_ONCE], ordered=True)
            except BulkWriteError as exc:
                if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ())):
                    raise DuplicateKeyError(collection) from exc
                raise
            except KeyError:  # a server whose answer to a failed bulk lacks counts (FerretDB 1.x): one by one
                await write_one_by_one(self, [w for w in writes if w.collection == collection])

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        parse_filter(where)
        check_sort(sort)
        cursor = self._coll(collection).find(dict(where or {}), {"_id": 0}, skip=skip, limit=limit)
        # without a sort MongoDB returns natural order; _id breaks ties so both backends agree on pages
        cursor = cursor.sort([*sort, ("_id", ASCENDING)] if sort else [("_id", ASCENDING)])
        return await cursor.to_list()

    async def count(self, collection: str, where: Filter | None = None) -> int:
        parse_filter(where)
        return await self._coll(collection).count_documents(dict(where or {}))

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None:
        check_sort([(f, 1) for f in fields])
        name = "_".join(f.replace(".", "_") for f in fields) + ("_unique" if unique else "")
        await self._coll(collection).create_index([(f, ASCENDING) for f in fields], unique=unique, name=name)

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        """The target's indexes are made on the source first, then the source is renamed over the target."""
        for target, source in replacements.items():
            names = await self._db.list_collection_names()
            if check_collection(source) not in names:
                await self._db.create_collection(source)
            if check_collection(target) in names:
                await self._carry_indexes(target, source)
            await self._rename(source, target)

    async def _carry_indexes(self, target: str, source: str) -> None:
        async for index in await self._coll(target).list_indexes():
            if index["name"] != "_id_":
                keys = list(index["key"].items())
                await self._coll(source).create_index(keys, name=index["name"], unique=index.get("unique", False))

    async def _rename(self, source: str, target: str) -> None:
        admin, db = self._db.client.admin, self._db.name
        try:
            await admin.command("renameCollection", f"{db}.{source}", to=f"{db}.{target}", dropTarget=True)
            return
        except OperationFailure as exc:
            if exc.code != NOT_IMPLEMENTED:
                raise
        # FerretDB 1.x renames onto no existing collection only: the target steps aside for a moment, during
        # which a read finds it empty
        retired = f"{target}__retired"
        await self._db.drop_collection(retired)
        try:
            await admin.command("renameCollection", f"{db}.{target}", to=f"{db}.{retired}")
        except OperationFailure as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
        try:
            await admin.command("renameCollection", f"{db}.{source}", to=f"{db}.{target}")
        except BaseException:
            await admin.command("renameCollection", f"{db}.{retired}", to=f"{db}.{target}")
            raise
        await self._db.drop_collection(retired)

    async def drop_collection(self, collection: str) -> None:
        await self._coll(collection).drop()

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        requests: list[DeleteOne | InsertOne[Document] | ReplaceOne[Document]] = []
        for doc_id, doc in documents.items():
            if doc is None:
                requests.append(DeleteOne({"_id": doc_id}))
            elif doc_id in unseen:  # an upsert looks the id up first (FerretDB scans for it)
                requests.append(InsertOne({**_plain(doc), "_id": doc_id}))
            else:
                requests.append(ReplaceOne({"_id": doc_id}, _plain(doc), upsert=True))
        if requests:
            try:
                for start in range(0, len(requests), BULK_WRITES_AT_ONCE):
                    await self._coll(collection).bulk_write(
                        requests[start : start + BULK_WRITES_AT_ONCE], ordered=False
                    )
            except BulkWriteError as exc:
                if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ())):
                    raise DuplicateKeyError(collection) from exc
                raise

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        """The client belongs to the backend, which closes it."""


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Documents are JSON data: the same values come back from both stores."""
    plain: dict[str, Any] = json.loads(json.dumps(doc))
    return plain
