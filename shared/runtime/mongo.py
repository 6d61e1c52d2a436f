"""Production adapters on a MongoDB-protocol server (MongoDB or FerretDB 1.x) through PyMongo's async API.

FerretDB 1.x has no multi-document transactions, so an append is ONE document (a "commit") that
holds the whole batch: atomic by construction. Its id is `<stream>:<first version>`, and the
writer checks the stream head before inserting; two writers that read the same head race for the
same id and the loser gets a duplicate key, hence a ConcurrencyError.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError as MongoDuplicateKeyError

from shared.events import Envelope
from shared.runtime.metrics import count_appended
from shared.runtime.ports import (
    ConcurrencyError,
    DuplicateKeyError,
    Filter,
    Sort,
    Unpublished,
    check_batch,
    check_collection,
    check_sort,
    parse_filter,
)

COMMITS = "event_commits"


class MongoEventStore:
    def __init__(self, db: AsyncDatabase, service: str) -> None:
        self.service = service
        self._commits = db[COMMITS]
        self._db = db
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self._commits.create_index([("stream_id", ASCENDING), ("last", DESCENDING)], name="stream_head")
            await self._commits.create_index(
                [("published", ASCENDING), ("stream_id", ASCENDING), ("first", ASCENDING)], name="outbox"
            )
            self._ready = True

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
        check_batch(stream_id, expected_version, events)
        await self._setup()
        head = await self._head(stream_id)
        if head != expected_version:
            raise ConcurrencyError(stream_id, expected_version, head)
        commit = {
            "_id": f"{stream_id}:{expected_version + 1}",
            "stream_id": stream_id,
            "first": expected_version + 1,
            "last": expected_version + len(events),
            "size": len(events),
            # envelopes as JSON text: FerretDB refuses nested arrays and keys with '.' or '$'
            "events": [e.model_dump_json() for e in events],
            "published": False,
            "recorded_at": datetime.now(UTC),
        }
        try:
            await self._commits.insert_one(commit)
        except MongoDuplicateKeyError as exc:
            raise ConcurrencyError(stream_id, expected_version) from exc
        count_appended(self.service, events)

    async def _head(self, stream_id: str) -> int:
        doc = await self._commits.find_one({"stream_id": stream_id}, {"last": 1}, sort=[("last", DESCENDING)])
        return doc["last"] if doc else 0

    async def read(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        await self._setup()
        cursor = self._commits.find({"stream_id": stream_id, "last": {"$gt": after_version}}, {"events": 1})
        envelopes = [
            Envelope.model_validate_json(raw) async for doc in cursor.sort("first", ASCENDING) for raw in doc["events"]
        ]
        return [e for e in envelopes if e.stream_version > after_version]

    async def unpublished(self, limit: int = 500) -> list[Unpublished]:
        await self._setup()
        cursor = self._commits.find({"published": False}, {"events": 1}).sort(
            [("stream_id", ASCENDING), ("first", ASCENDING)]
        )
        return [
            Unpublished(token=doc["_id"], events=tuple(Envelope.model_validate_json(raw) for raw in doc["events"]))
            async for doc in cursor.limit(limit)
        ]

    async def mark_published(self, batches: Sequence[Unpublished]) -> None:
        if batches:
            await self._commits.update_many({"_id": {"$in": [b.token for b in batches]}}, {"$set": {"published": True}})

    async def backlog(self) -> int:
        await self._setup()
        rows = await (
            await self._commits.aggregate(
                [{"$match": {"published": False}}, {"$group": {"_id": None, "n": {"$sum": "$size"}}}]
            )
        ).to_list()
        return rows[0]["n"] if rows else 0

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        """The client belongs to the backend, which closes it."""


class MongoDocumentStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db

    def _coll(self, collection: str):
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

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        """The client belongs to the backend, which closes it."""


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Documents are JSON data: the same values come back from both stores."""
    return json.loads(json.dumps(doc))
