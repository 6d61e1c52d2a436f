"""Batched writes (ADR 0009): `DocumentStore.write` and the consumers' `BatchedDocuments`, on every store."""

import asyncio

import pytest

from shared.events import MissionReopened
from shared.runtime.ports import DuplicateKeyError, Write


def reopened(stream: str, version: int):
    return MissionReopened(mission_id=stream, organization_id="o", free_places=version).envelope(version)


async def test_write_applies_puts_inserts_and_deletes_in_one_call(storage):
    docs = storage.documents.inner
    await docs.put("things", "gone", {"n": 0})
    await docs.write(
        [
            Write("things", "a", {"n": 1}),
            Write("things", "b", {"n": 2, "nested": {"list": [1, {"x": "é"}]}}, insert_only=True),
            Write("things", "a", {"n": 3}),
            Write("things", "gone", None),
            Write("others", "c", {"n": 4}),
        ]
    )
    assert await docs.get("things", "a") == {"n": 3}
    assert await docs.get("things", "b") == {"n": 2, "nested": {"list": [1, {"x": "é"}]}}
    assert await docs.get("things", "gone") is None
    assert await docs.get("others", "c") == {"n": 4}


async def test_an_insert_only_on_a_taken_id_is_a_duplicate_key(storage):
    docs = storage.documents.inner
    await docs.put("things", "a", {"n": 1})
    with pytest.raises(DuplicateKeyError):
        await docs.write([Write("things", "a", {"n": 2}, insert_only=True)])
    assert await docs.get("things", "a") == {"n": 1}


async def test_writes_inside_a_batch_wait_in_memory_and_are_read_back(storage):
    docs = storage.documents
    asks: asyncio.Queue[asyncio.Future] = asyncio.Queue()

    async def reader_outside_the_batch() -> None:  # an HTTP request, say: started before the batch
        while True:
            answer = await asks.get()
            answer.set_result(await docs.get("things", "a"))

    async def read_outside():
        answer = asyncio.get_running_loop().create_future()
        await asks.put(answer)
        return await answer

    reader = asyncio.create_task(reader_outside_the_batch())
    try:
        async with docs.batch():
            await docs.put("things", "a", {"n": 1})
            await docs.put("things", "a", {"n": 2})
            await docs.put("things", "gone", {"n": 0})
            assert await docs.delete("things", "gone") is True
            assert await docs.get("things", "a") == {"n": 2}  # a handler reads its own writes
            assert await docs.get("things", "gone") is None
            assert await read_outside() is None  # others see them once flushed
            await docs.flush()
            assert await read_outside() == {"n": 2}
    finally:
        reader.cancel()
    assert await docs.inner.get("things", "gone") is None


async def test_a_document_changed_after_put_in_a_batch_is_not_changed_in_memory(storage):
    docs = storage.documents
    doc = {"list": [{"x": 1}], "nested": {"y": 1}}
    async with docs.batch():
        await docs.put("things", "a", doc)
        doc["list"][0]["x"] = 99
        doc["nested"]["y"] = 99
        assert await docs.get("things", "a") == {"list": [{"x": 1}], "nested": {"y": 1}}
        await docs.flush()
    assert await docs.get("things", "a") == {"list": [{"x": 1}], "nested": {"y": 1}}


async def test_a_batch_left_without_flush_writes_nothing(storage):
    docs = storage.documents
    with pytest.raises(RuntimeError):
        async with docs.batch():
            await docs.put("things", "a", {"n": 1})
            raise RuntimeError("the handler failed: the batch is delivered again")
    assert await docs.get("things", "a") is None


async def test_queries_inserts_and_appends_see_the_pending_writes_first(storage):
    docs = storage.documents
    async with docs.batch():
        await docs.put("things", "a", {"kind": "x"})
        assert [d["kind"] for d in await docs.find("things", {"kind": "x"})] == ["x"]  # applied before the query
        await docs.put("things", "b", {"kind": "x"})
        assert await docs.count("things", {"kind": "x"}) == 2
        await docs.put("things", "c", {"kind": "y"})
        await docs.insert("claims", "c", {"by": "me"})  # a claim is answered at once
        with pytest.raises(DuplicateKeyError):
            await docs.insert("claims", "c", {"by": "another"})
        await docs.put("things", "d", {"kind": "z"})
        await storage.store.append("m1", 0, [reopened("m1", 1)])  # its documents before its events
        assert await docs.inner.get("things", "d") == {"kind": "z"}


async def test_an_added_document_waits_with_the_batch_and_what_follows_it_waits_for_the_write(storage):
    docs, called = storage.documents, []
    async with docs.batch():
        await docs.add("things", "a", {"n": 1}, then=lambda: called.append("a"))
        assert called == [] and await docs.inner.get("things", "a") is None  # in memory
        assert await docs.get("things", "a") == {"n": 1}  # read back from there
        await docs.flush()
        assert called == ["a"] and await docs.inner.get("things", "a") == {"n": 1}
        await docs.add("things", "a", {"n": 2}, then=lambda: called.append("again"))
        with pytest.raises(DuplicateKeyError):  # the runner then redoes the batch one event at a time
            await docs.flush()
    assert called == ["a"]
    await docs.add("things", "b", {"n": 3}, then=lambda: called.append("b"))  # outside a batch: at once
    assert called == ["a", "b"] and await docs.inner.get("things", "b") == {"n": 3}
    with pytest.raises(DuplicateKeyError):
        await docs.add("things", "b", {"n": 4}, then=lambda: called.append("never"))
    assert called == ["a", "b"] and await docs.inner.get("things", "a") == {"n": 1}
