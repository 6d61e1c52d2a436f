"""EventBus contract, on the SQLite log and on Kafka."""

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from shared.runtime.backend import open_bus
from shared.runtime.ports import Message, OutgoingMessage
from tests.conftest import eventually


@pytest.fixture
async def bus(settings):
    bus = open_bus(settings)
    yield bus
    await bus.close()


class Inbox:
    """What one member received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def values(self) -> list[str]:
        return [m.value.decode() for m in self.messages]


def messages(keys: int, per_key: int, start: int = 0) -> list[OutgoingMessage]:
    return [
        OutgoingMessage("test.things", f"k{k}", f"k{k}:{i}".encode(), (("h", b"v"),))
        for i in range(start, start + per_key)
        for k in range(keys)
    ]


async def received(bus, group: str, sent: list[OutgoingMessage], publish: Callable[[], Awaitable[object]]) -> Inbox:
    """What a new member of `group` received once `publish()` sent `sent`."""
    inbox = Inbox()
    member = bus.subscribe(group, ["test.things"], inbox)
    await member.start()
    try:
        await publish()
        await eventually(lambda: _at_least(inbox, len(sent)), what="all messages")
    finally:
        await member.stop()
    return inbox


async def test_each_key_is_delivered_in_order_with_its_headers(bus):
    sent = messages(keys=8, per_key=25)

    async def in_chunks() -> None:
        for chunk in range(0, len(sent), 40):
            await bus.publish(sent[chunk : chunk + 40])

    inbox = await received(bus, "g1", sent, in_chunks)
    per_key: dict[str, list[int]] = defaultdict(list)
    for message in inbox.messages:
        key, index = message.value.decode().split(":")
        assert message.key == key
        assert ("h", b"v") in message.headers
        per_key[key].append(int(index))
    assert all(indexes == sorted(indexes) for indexes in per_key.values())
    assert {m.value for m in inbox.messages} == {m.value for m in sent}


async def test_concurrent_publishers_all_land(bus):
    """Many requests publish at once (a sign-up burst): none fails, every message arrives once."""
    sent = messages(keys=50, per_key=20)
    inbox = await received(bus, "g-burst", sent, lambda: asyncio.gather(*(bus.publish([m]) for m in sent)))
    assert sorted(inbox.values()) == sorted(m.value.decode() for m in sent)


async def test_two_groups_each_get_every_message(bus):
    first, second = Inbox(), Inbox()
    members = [bus.subscribe("g-a", ["test.things"], first), bus.subscribe("g-b", ["test.things"], second)]
    for member in members:
        await member.start()
    try:
        sent = messages(keys=5, per_key=10)
        await bus.publish(sent)
        await eventually(lambda: _at_least(first, 50), what="group a")
        await eventually(lambda: _at_least(second, 50), what="group b")
    finally:
        for member in members:
            await member.stop()
    assert set(first.values()) == set(second.values()) == {m.value.decode() for m in sent}


async def test_two_members_of_a_group_share_the_partitions(bus, settings):
    await bus.publish(messages(keys=1, per_key=1))  # the topic exists before members join
    first, second = Inbox(), Inbox()
    a = bus.subscribe("g-share", ["test.things"], first)
    b = bus.subscribe("g-share", ["test.things"], second)
    await a.start()
    await b.start()
    try:

        async def split() -> bool:
            return bool(a.assignment()) and bool(b.assignment()) and not (a.assignment() & b.assignment())

        await eventually(split, what="both members assigned")
        assert len(a.assignment() | b.assignment()) == settings.partitions
        already_a, already_b = len(first.messages), len(second.messages)
        sent = messages(keys=40, per_key=3)
        await bus.publish(sent)
        await eventually(lambda: _at_least_all(first, second, len(sent) + 1), what="everything delivered")
    finally:
        await a.stop()
        await b.stop()
    to_a, to_b = first.messages[already_a:], second.messages[already_b:]
    assert to_a and to_b
    assert {m.partition for m in to_a}.isdisjoint({m.partition for m in to_b})
    assert {m.value.decode() for m in to_a + to_b} == {m.value.decode() for m in sent}


async def test_a_restarted_member_resumes_after_its_last_committed_offset(bus):
    before = Inbox()
    member = bus.subscribe("g-resume", ["test.things"], before)
    await member.start()
    await bus.publish(messages(keys=4, per_key=5))
    await eventually(lambda: _at_least(before, 20), what="first half")
    await member.stop()

    await bus.publish(messages(keys=4, per_key=5, start=5))
    after = Inbox()
    member = bus.subscribe("g-resume", ["test.things"], after)
    await member.start()
    try:
        await eventually(lambda: _at_least(after, 20), what="second half")
    finally:
        await member.stop()
    assert sorted(after.values()) == sorted(m.value.decode() for m in messages(keys=4, per_key=5, start=5))


async def test_a_failing_handler_stops_the_member_without_committing(bus):
    calls: list[str] = []

    async def broken(message: Message) -> None:
        calls.append(message.value.decode())
        raise RuntimeError("bug")

    member = bus.subscribe("g-broken", ["test.things"], broken)
    await member.start()
    await bus.publish(messages(keys=1, per_key=3))
    await eventually(lambda: _true(bool(calls)), what="first delivery")
    await member.stop()

    retry = Inbox()
    member = bus.subscribe("g-broken", ["test.things"], retry)
    await member.start()
    try:
        await eventually(lambda: _at_least(retry, 3), what="redelivery")
    finally:
        await member.stop()
    assert retry.values()[0] == calls[0]


async def _true(value: bool) -> bool:
    return value


async def _at_least(inbox: Inbox, n: int) -> bool:
    return len(inbox.messages) >= n


async def _at_least_all(a: Inbox, b: Inbox, n: int) -> bool:
    return len(a.messages) + len(b.messages) >= n


async def test_a_member_whose_handler_crashed_restarts_from_the_committed_offset(bus):
    crashed: list[str] = []
    inbox = Inbox()

    async def crashes_once(message: Message) -> None:
        if message.value == b"k0:2" and not crashed:
            crashed.append(message.value.decode())
            raise RuntimeError("bug")
        await inbox(message)

    restarts = ("civique_task_restarts_total", {"task": "consumer:g-crash"})
    before = REGISTRY.get_sample_value(*restarts) or 0.0
    member = bus.subscribe("g-crash", ["test.things"], crashes_once)
    await member.start()
    try:
        await bus.publish(messages(keys=2, per_key=5))
        await eventually(lambda: _true("k0:4" in inbox.values() and "k1:4" in inbox.values()), what="everything")
        assert member.status() == "ok"
    finally:
        await member.stop()
    assert crashed == ["k0:2"]
    assert REGISTRY.get_sample_value(*restarts) == before + 1
    assert set(inbox.values()) == {m.value.decode() for m in messages(keys=2, per_key=5)}
    first_seen = list(dict.fromkeys(v for v in inbox.values() if v.startswith("k0")))
    assert first_seen == [f"k0:{i}" for i in range(5)]  # from the committed offset on: nothing skipped


async def test_the_lag_is_what_the_group_has_not_committed_per_partition(bus, settings):
    """What KEDA reads: the high-water mark minus the group's committed offset, fetched or not."""
    every_partition = {("test.things", p) for p in range(settings.partitions)}
    await bus.publish(messages(keys=8, per_key=3))
    never_consumed = await bus.lag("g-lag", ["test.things"])
    assert set(never_consumed) == every_partition and sum(never_consumed.values()) == 24

    flowing, entered, inbox = asyncio.Event(), Inbox(), Inbox()
    flowing.set()

    async def handler(message: Message) -> None:
        await entered(message)
        await flowing.wait()
        await inbox(message)

    async def lag_is(total: int) -> bool:
        return sum((await bus.lag("g-lag", ["test.things"])).values()) == total

    member = bus.subscribe("g-lag", ["test.things"], handler)
    await member.start()
    try:
        await eventually(lambda: lag_is(0), what="the first batch committed")
        flowing.clear()  # from now on the member fetches but does not get through a message
        backlog = messages(keys=8, per_key=2, start=3)
        await bus.publish(backlog)
        await eventually(lambda: _at_least(entered, 25), what="a message of the backlog being handled")
        lag = await bus.lag("g-lag", ["test.things"])
        flowing.set()
        await eventually(lambda: _at_least(inbox, 40), what="the backlog handled")
        await eventually(lambda: lag_is(0), what="the backlog committed")
    finally:
        await member.stop()
    expected = Counter(m.partition for m in inbox.messages if int(m.value.decode().split(":")[1]) >= 3)
    assert lag == {tp: expected[tp[1]] for tp in every_partition}


async def test_a_history_whose_first_records_were_deleted_is_refused_not_replayed_with_holes(tmp_path, servers):
    """Kafka only (the embedded log deletes nothing): a retention or an operator deleting records makes a
    replay of them fail loudly rather than rebuild read models without their events."""
    from aiokafka import TopicPartition
    from aiokafka.admin import RecordsToDelete

    from shared.runtime.ports import HistoryLost
    from tests.conftest import make_settings

    bus = open_bus(make_settings("kafka+mongo", tmp_path, servers))
    try:
        await bus.publish(messages(keys=8, per_key=5))
        until = await bus.last_offsets(["test.things"])
        assert await bus.history_size(["test.things"], until) == 40
        partition = next(p for (_, p), last in until.items() if last >= 2)
        admin, _ = await bus._offsets_clients()
        await admin.delete_records({TopicPartition(bus.name("test.things"), partition): RecordsToDelete(2)})
        with pytest.raises(HistoryLost, match=f"test.things/{partition}"):
            await bus.history_size(["test.things"], until)
        with pytest.raises(HistoryLost):
            async for _ in bus.history(["test.things"], until):
                pass
        after = {("test.things", partition): 1}  # what was read before the deletion is not asked for again
        assert await bus.history_size(["test.things"], until, after) == 40 - 2
    finally:
        await bus.close()
