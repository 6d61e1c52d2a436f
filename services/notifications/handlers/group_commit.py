"""Writes of concurrent senders gathered into one round trip of the document store (`DocumentStore.write`): the
claims of the e-mails about to leave, the records of those that left."""

import asyncio
from collections.abc import Mapping
from typing import Any

from shared.runtime.ports import DocumentStore, DuplicateKeyError, Write


class WriteInterrupted(Exception):
    """The round trip carrying this write was cancelled with its caller: whether it applied is unknown."""


class GroupCommit:
    """Whoever writes while a round trip is under way waits for the next one, which carries every write queued
    meanwhile: as many round trips as moments of waiting, not as writes. Each caller still learns its own
    outcome, as with a write of its own."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents
        self._queued: list[tuple[Write, asyncio.Future[bool]]] = []
        self._writing: asyncio.Future[None] | None = None

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        await self._apply(Write(collection, doc_id, doc))

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> bool:
        """Insert only; False when the id was taken by another writer (`doc` must tell writers apart)."""
        return await self._apply(Write(collection, doc_id, doc, insert_only=True))

    async def _apply(self, write: Write) -> bool:
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((write, outcome))
        while not outcome.done():
            if self._writing is None:
                await self._write_queued()
            else:  # shielded: a waiter cancelled must not cancel the round trip others wait for
                await asyncio.shield(self._writing)
        return outcome.result()

    async def _write_queued(self) -> None:
        batch, self._queued = self._queued, []
        self._writing = asyncio.get_running_loop().create_future()
        try:
            outcomes = await self._outcomes([write for write, _ in batch])
        except Exception as failed:
            for _, outcome in batch:
                outcome.set_exception(failed)
        except BaseException:
            for _, outcome in batch:
                outcome.set_exception(WriteInterrupted())
                outcome.exception()  # retrieved here: this caller is leaving with its cancellation
            raise
        else:
            for (_, outcome), applied in zip(batch, outcomes, strict=True):
                outcome.set_result(applied)
        finally:
            writing, self._writing = self._writing, None
            writing.set_result(None)

    async def _outcomes(self, writes: list[Write]) -> list[bool]:
        try:
            await self.documents.write(writes)
        except DuplicateKeyError:
            if len(writes) == 1 and writes[0].insert_only:
                return [False]
            # which insert found its id taken: each alone (what an ordered bulk wrote before failing stays)
            return [await self._alone(write) for write in writes]
        return [True] * len(writes)

    async def _alone(self, write: Write) -> bool:
        assert write.doc is not None  # puts and inserts only
        if not write.insert_only:
            await self.documents.put(write.collection, write.doc_id, write.doc)
            return True
        try:
            await self.documents.insert(write.collection, write.doc_id, write.doc)
        except DuplicateKeyError:
            return await self.documents.get(write.collection, write.doc_id) == dict(write.doc)  # ours already?
        return True
