"""EventStore contract, on SQLite, on FerretDB and in memory."""

import asyncio

import pytest

from shared.events import MissionReopened
from shared.runtime.backend import open_storage
from shared.runtime.consumers import is_transient
from shared.runtime.ports import ConcurrencyError, StreamBusy


@pytest.fixture
def store(storage):
    return storage.store


def reopened(stream: str, first_version: int, count: int = 1):
    return [
        MissionReopened(mission_id=stream, organization_id="o", free_places=first_version + i).envelope(
            first_version + i
        )
        for i in range(count)
    ]


async def test_appends_and_reads_a_stream_in_order(store):
    await store.append("m-1", 0, reopened("m-1", 1, 2))
    await store.append("m-1", 2, reopened("m-1", 3, 3))
    await store.append("m-2", 0, reopened("m-2", 1))

    events = await store.read("m-1")
    assert [e.stream_version for e in events] == [1, 2, 3, 4, 5]
    assert [e.data["free_places"] for e in events] == [1, 2, 3, 4, 5]
    assert [e.stream_version for e in await store.read("m-1", after_version=3)] == [4, 5]
    assert await store.read("unknown") == []


@pytest.mark.parametrize("expected", [0, 1, 3])
async def test_a_wrong_expected_version_is_a_conflict_and_appends_nothing(store, expected):
    await store.append("m-1", 0, reopened("m-1", 1, 2))
    with pytest.raises(ConcurrencyError):
        await store.append("m-1", expected, reopened("m-1", expected + 1))
    assert len(await store.read("m-1")) == 2


async def test_of_concurrent_appends_at_the_same_version_exactly_one_wins(store):
    await store.append("m-1", 0, reopened("m-1", 1))
    results = await asyncio.gather(
        *(store.append("m-1", 1, reopened("m-1", 2, 2)) for _ in range(8)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if r is not None)
    assert [e.stream_version for e in await store.read("m-1")] == [1, 2, 3]


@pytest.mark.parametrize("backend", ["embedded", "kafka+mongo"])
async def test_a_writer_of_another_process_with_an_outdated_version_is_a_conflict(backend, tmp_path, request):
    """Two processes on one store: what one appended, the other (which knew an older head) cannot overwrite,
    even at a version inside a commit of several events."""
    from tests.conftest import make_settings

    servers = request.getfixturevalue("servers") if backend == "kafka+mongo" else None
    settings = make_settings(backend, tmp_path, servers)
    first, second = open_storage(settings, "contract"), open_storage(settings, "contract")
    try:
        await first.store.append("m-1", 0, reopened("m-1", 1))
        assert len(await second.store.read("m-1")) == 1  # the second process saw version 1 end a commit
        await first.store.append("m-1", 1, reopened("m-1", 2, 3))
        for stale in (1, 2, 3):  # the head it knew, then versions inside the first's commit of three
            with pytest.raises(ConcurrencyError):
                await second.store.append("m-1", stale, reopened("m-1", stale + 1))
        await second.store.append("m-1", 4, reopened("m-1", 5))
        assert [e.stream_version for e in await first.store.read("m-1")] == [1, 2, 3, 4, 5]
        assert [e.stream_version for e in await first.store.read("m-1", after_version=2)] == [3, 4, 5]
    finally:
        await first.close()
        await second.close()


async def test_a_batch_is_all_or_nothing_even_to_concurrent_readers(store):
    seen_lengths: set[int] = set()

    async def read_while_writing():
        for _ in range(60):
            seen_lengths.add(len(await store.read("m-1")))

    async def write_batches():
        for i in range(20):
            await store.append("m-1", i * 5, reopened("m-1", i * 5 + 1, 5))

    await asyncio.gather(read_while_writing(), write_batches())
    assert all(n % 5 == 0 for n in seen_lengths), seen_lengths
    # a stale batch that loses the race leaves no partial trace
    with pytest.raises(ConcurrencyError):
        await store.append("m-1", 95, reopened("m-1", 96, 5))
    assert len(await store.read("m-1")) == 100


async def test_a_malformed_batch_is_refused_before_writing(store):
    with pytest.raises(ValueError, match="expected"):
        await store.append("m-1", 0, reopened("m-1", 2))
    with pytest.raises(ValueError, match="expected"):
        await store.append("m-1", 0, reopened("other", 1))
    with pytest.raises(ValueError, match="nothing"):
        await store.append("m-1", 0, [])
    assert await store.read("m-1") == []


async def test_unpublished_events_come_in_stream_order_until_marked(store):
    await store.append("a", 0, reopened("a", 1, 2))
    await store.append("b", 0, reopened("b", 1))
    await store.append("a", 2, reopened("a", 3))
    assert await store.backlog() == 4

    pending = await store.unpublished()
    by_stream: dict[str, list[int]] = {}
    for batch in pending:
        for event in batch.events:
            by_stream.setdefault(event.stream_id, []).append(event.stream_version)
    assert by_stream == {"a": [1, 2, 3], "b": [1]}

    await store.mark_published(pending[:1])
    left = [e for b in await store.unpublished() for e in b.events]
    assert len(left) == 4 - len(pending[0].events)
    await store.mark_published(await store.unpublished())
    assert await store.unpublished() == []
    assert await store.backlog() == 0


async def test_a_writer_dead_between_outbox_and_commit_blocks_its_version_until_the_orphan_is_dropped(
    tmp_path, servers
):
    """MongoDB protocol only: the embedded store writes both in one transaction, so it has no such gap."""
    from datetime import UTC, datetime

    from shared.runtime.mongo import ORPHAN_AFTER, OUTBOX
    from tests.conftest import make_settings

    storage = open_storage(make_settings("kafka+mongo", tmp_path, servers), "contract")
    store = storage.store
    try:
        await store.append("m1", 0, reopened("m1", 1))
        outbox = store.inner._outbox  # the dead writer's half-done append, as it left it
        await outbox.insert_one(
            {"_id": "m1:2", "stream_id": "m1", "first": 2, "size": 1, "recorded_at": datetime.now(UTC)}
        )
        with pytest.raises(StreamBusy) as busy:  # not a concurrent success: nothing was written at version 2
            await store.append("m1", 1, reopened("m1", 2))
        assert isinstance(busy.value, ConcurrencyError) and is_transient(busy.value)
        assert [b.token for b in await store.unpublished()] == ["m1:1"]  # the orphan waits: maybe just slow
        await outbox.update_one({"_id": "m1:2"}, {"$set": {"recorded_at": datetime.now(UTC) - 2 * ORPHAN_AFTER}})
        assert [b.token for b in await store.unpublished()] == ["m1:1"]
        assert await outbox.find_one({"_id": "m1:2"}) is None and outbox.name == OUTBOX  # dropped
        await store.append("m1", 1, reopened("m1", 2))
        assert [e.stream_version for e in await store.read("m1")] == [1, 2]
        assert [b.token for b in await store.unpublished()] == ["m1:1", "m1:2"]
    finally:
        await storage.close()
