"""Choosing the adapters: embedded SQLite files, or Kafka + a MongoDB-protocol server."""

from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient

from shared.runtime.batched import BatchedDocuments, DocumentsFirst
from shared.runtime.embedded import SqliteDatabase, SqliteDocumentStore, SqliteEventBus, SqliteEventStore
from shared.runtime.kafka import KafkaEventBus
from shared.runtime.mongo import MongoDocumentStore, MongoEventStore
from shared.runtime.ports import DocumentStore, EventBus, EventStore
from shared.runtime.settings import Settings


@dataclass
class Storage:
    """One service's own data: its event store and its read models (written in batches by its consumers)."""

    store: EventStore
    documents: BatchedDocuments
    _client: AsyncMongoClient[dict[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, store: EventStore, documents: DocumentStore, client: AsyncMongoClient[dict[str, Any]] | None = None
    ) -> "Storage":
        batched = BatchedDocuments(documents)
        return cls(DocumentsFirst(store, batched), batched, client)

    async def close(self) -> None:
        await self.store.close()
        await self.documents.close()
        if self._client is not None:
            await self._client.close()


def open_bus(settings: Settings) -> EventBus:
    """The bus every service of a process shares."""
    if settings.backend == "embedded":
        return SqliteEventBus(SqliteDatabase(settings.data_dir / "bus.sqlite3"), partitions=settings.partitions)
    return KafkaEventBus(
        settings.kafka_bootstrap_servers,
        namespace=settings.namespace,
        partitions=settings.partitions,
        session_timeout_ms=settings.consumer_session_timeout_ms,
    )


def database_name(settings: Settings, service: str) -> str:
    """Each service owns one database; FerretDB takes letters, digits and underscores."""
    return f"civique_{settings.namespace}{service}"


def open_storage(settings: Settings, service: str) -> Storage:
    """The event store and document store of one service (its own file, or its own database)."""
    if settings.backend == "embedded":
        db = SqliteDatabase(settings.data_dir / f"{settings.namespace}{service}.sqlite3")
        return Storage.of(SqliteEventStore(db, service), SqliteDocumentStore(db))
    # 5 s to find the server unless the URL says otherwise (`?serverSelectionTimeoutMS=`)
    given = "serverselectiontimeoutms" in settings.mongodb_url.lower()
    timeout: dict[str, Any] = {} if given else {"serverSelectionTimeoutMS": 5000}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url, tz_aware=True, **timeout)
    database = client[database_name(settings, service)]
    return Storage.of(MongoEventStore(database, service), MongoDocumentStore(database), client)
