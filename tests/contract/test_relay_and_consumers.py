"""Relay and consumer runner contracts, on both backends."""

import uuid
from collections import defaultdict

import pytest
import structlog
from prometheus_client import REGISTRY

from shared.events import Envelope, MissionFilled, MissionReopened
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import (
    POSITIONS,
    REMEMBERED_IDS,
    ConsumerRunner,
    Subscriber,
    dead_letter_topic,
    pause_group,
    resume_group,
)
from shared.runtime.ports import Message, OutgoingMessage, Unavailable
from shared.runtime.projections import fresh_document
from shared.runtime.relay import Relay
from tests.conftest import eventually


@pytest.fixture
async def platform(settings):
    storage, bus = open_storage(settings, "contract"), open_bus(settings)
    yield storage, bus
    await storage.close()
    await bus.close()


def reopened(stream: str, version: int) -> Envelope:
    return MissionReopened(mission_id=stream, organization_id="o", free_places=version).envelope(version)


async def append_streams(store, streams: int, versions: int) -> None:
    for v in range(1, versions + 1):
        for s in range(streams):
            await store.append(f"m{s}", v - 1, [reopened(f"m{s}", v)])


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Envelope] = []

    async def __call__(self, message: Message) -> None:
        self.seen.append(Envelope.from_json(message.value))

    async def count_at_least(self, n: int) -> bool:
        return len(self.seen) >= n


class PublishesHalfThenDies:
    """A bus that loses the connection half-way through a batch: what a killed relay leaves behind."""

    def __init__(self, bus) -> None:
        self.bus = bus

    async def publish(self, messages: list[OutgoingMessage]) -> None:
        await self.bus.publish(messages[: len(messages) // 2])
        raise ConnectionError("relay killed mid-batch")


async def test_the_relay_publishes_in_stream_order_and_marks(platform):
    storage, bus = platform
    await append_streams(storage.store, streams=5, versions=6)
    recorder = Recorder()
    member = bus.subscribe("relay-check", ["missions.mission"], recorder)
    await member.start()
    try:
        assert await Relay("contract", storage.store, bus).publish_pending() == 30
        await eventually(lambda: recorder.count_at_least(30), what="30 events")
    finally:
        await member.stop()
    assert await storage.store.backlog() == 0
    versions = defaultdict(list)
    for event in recorder.seen:
        versions[event.stream_id].append(event.stream_version)
    assert dict(versions) == {f"m{s}": [1, 2, 3, 4, 5, 6] for s in range(5)}


async def test_an_append_in_this_process_wakes_the_idle_relay_at_once(platform):
    storage, bus = platform
    recorder = Recorder()
    subscription = bus.subscribe("woken", ["missions.mission"], recorder)
    await subscription.start()
    relay = Relay("contract", storage.store, bus, interval=3600)  # idle polls an hour apart
    relay.start()
    try:
        await storage.store.append("m1", 0, [reopened("m1", 1)])
        await eventually(
            lambda: recorder.count_at_least(1), within=10, what="the append published long before the poll"
        )
    finally:
        await relay.stop()
        await subscription.stop()


async def test_a_relay_killed_mid_way_loses_nothing_on_restart(platform):
    storage, bus = platform
    await append_streams(storage.store, streams=4, versions=5)
    with pytest.raises(ConnectionError):
        await Relay("contract", storage.store, PublishesHalfThenDies(bus)).publish_pending()
    assert await storage.store.backlog() == 20  # nothing marked: all of it goes again

    recorder = Recorder()
    member = bus.subscribe("relay-restart", ["missions.mission"], recorder)
    await member.start()
    try:
        assert await Relay("contract", storage.store, bus).publish_pending() == 20
        await eventually(lambda: recorder.count_at_least(30), what="first half plus everything")
    finally:
        await member.stop()
    assert {(e.stream_id, e.stream_version) for e in recorder.seen} == {
        (f"m{s}", v) for s in range(4) for v in range(1, 6)
    }
    first_seen = defaultdict(list)
    for event in recorder.seen:
        if event.stream_version not in first_seen[event.stream_id]:
            first_seen[event.stream_id].append(event.stream_version)
    assert all(v == sorted(v) for v in first_seen.values())


class Projection:
    """A handler that fails on demand and counts what it handled."""

    def __init__(self, fail_times: dict[int, int] | None = None, error: type[Exception] = RuntimeError) -> None:
        self.handled: list[int] = []
        self.attempts: dict[int, int] = defaultdict(int)
        self.fail_times, self.error = fail_times or {}, error

    async def __call__(self, event: MissionReopened, envelope: Envelope) -> None:
        self.attempts[event.free_places] += 1
        if self.attempts[event.free_places] <= self.fail_times.get(event.free_places, 0):
            raise self.error(f"failure {self.attempts[event.free_places]}")
        self.handled.append(event.free_places)

    async def handled_at_least(self, n: int) -> bool:
        return len(self.handled) >= n


def runner(platform, projection: Projection, *, group: str = "projection", max_attempts: int = 3) -> ConsumerRunner:
    storage, bus = platform
    subscriber = Subscriber(group, {MissionReopened: projection})
    return ConsumerRunner(subscriber, bus, storage.documents, max_attempts=max_attempts, backoff=0.001)


async def publish(bus, envelopes: list[Envelope]) -> None:
    await bus.publish([OutgoingMessage.of(e) for e in envelopes])


async def test_redelivered_events_are_handled_once_even_across_restarts(platform):
    storage, bus = platform
    events = [reopened("m1", v) for v in range(1, 6)]
    projection = Projection()
    first = runner(platform, projection)
    await first.start()
    await publish(bus, events + events[:2])
    await eventually(lambda: projection.handled_at_least(5), what="five events")
    await first.stop()

    second = runner(platform, projection)
    await second.start()
    try:
        await publish(bus, [*events, reopened("m1", 6)])  # a relay restart republishing everything
        await eventually(lambda: projection.handled_at_least(6), what="the sixth event")
    finally:
        await second.stop()
    assert projection.handled == [1, 2, 3, 4, 5, 6]
    # what the group remembers is bounded: one record per partition it consumed, however many events
    assert await storage.documents.count(POSITIONS, {"group": "projection"}) == 1


async def test_a_transient_failure_is_retried_then_handled(platform):
    projection = Projection(fail_times={2: 2})
    member = runner(platform, projection, max_attempts=3)
    await member.start()
    try:
        await publish(platform[1], [reopened("m1", v) for v in (1, 2, 3)])
        await eventually(lambda: projection.handled_at_least(3), what="three events")
    finally:
        await member.stop()
    assert projection.handled == [1, 2, 3]
    assert projection.attempts[2] == 3


async def test_a_dependency_unavailable_longer_than_the_attempts_is_waited_out_not_dead_lettered(platform):
    projection = Projection(fail_times={2: 6}, error=Unavailable)
    member = runner(platform, projection, max_attempts=3)
    await member.start()
    try:
        await publish(platform[1], [reopened("m1", v) for v in (1, 2, 3)])
        await eventually(lambda: projection.handled_at_least(3), what="three events")
    finally:
        await member.stop()
    assert projection.handled == [1, 2, 3]
    assert projection.attempts[2] == 7  # twice the attempts a bug gets, and still handled


async def test_after_bounded_retries_the_event_goes_to_the_dlq_and_the_group_goes_on(platform):
    _, bus = platform
    dead = Recorder()
    dead_messages: list[Message] = []

    async def record_dead(message: Message) -> None:
        dead_messages.append(message)
        await dead(message)

    watcher = bus.subscribe("dlq-watch", [dead_letter_topic("missions.mission")], record_dead)
    await watcher.start()
    projection = Projection(fail_times={2: 99})
    member = runner(platform, projection, max_attempts=4)
    await member.start()
    try:
        await publish(bus, [reopened("m1", v) for v in (1, 2, 3)])
        await eventually(lambda: projection.handled_at_least(2), what="the events around the poison")
        await eventually(lambda: dead.count_at_least(1), what="the dead letter")
    finally:
        await member.stop()
        await watcher.stop()
    assert projection.handled == [1, 3]
    assert projection.attempts[2] == 4
    headers = dict(dead_messages[0].headers)
    assert dead.seen[0].data["free_places"] == 2
    assert (headers["x-error-type"], headers["x-attempts"], headers["x-group"]) == (
        b"RuntimeError",
        b"4",
        b"projection",
    )
    assert b"failure 4" in headers["x-error-message"]


async def test_an_unreadable_message_is_dead_lettered_at_once(platform):
    _, bus = platform
    dead: list[Message] = []

    async def record_dead(message: Message) -> None:
        dead.append(message)

    watcher = bus.subscribe("dlq-watch", [dead_letter_topic("missions.mission")], record_dead)
    await watcher.start()
    projection = Projection()
    member = runner(platform, projection)
    await member.start()
    try:
        await bus.publish([OutgoingMessage("missions.mission", "m1", b"not json")])
        bad_payload = reopened("m1", 2).model_copy(update={"data": {"mission_id": "m1"}})
        await publish(bus, [bad_payload, reopened("m1", 3)])
        await eventually(lambda: projection.handled_at_least(1), what="the good event")

        async def two_dead() -> bool:
            return len(dead) >= 2

        await eventually(two_dead, what="two dead letters")
    finally:
        await member.stop()
        await watcher.stop()
    assert projection.handled == [3]
    assert projection.attempts[2] == 0  # never handed to the handler: invalid payloads are not retried
    assert sorted(dict(m.headers)["x-error-type"] for m in dead) == [b"PermanentError", b"ValidationError"]
    assert all(dict(m.headers)["x-attempts"] == b"1" for m in dead)


async def test_events_a_group_does_not_handle_are_skipped(platform):
    projection = Projection()
    member = runner(platform, projection)
    await member.start()
    try:
        await publish(platform[1], [MissionFilled(mission_id="m1", organization_id="o").envelope(1), reopened("m1", 2)])
        await eventually(lambda: projection.handled_at_least(1), what="the handled event")
    finally:
        await member.stop()
    assert projection.handled == [2]


def consumed(group: str, outcome: str) -> float:
    labels = {"group": group, "topic": "missions.mission", "outcome": outcome}
    return REGISTRY.get_sample_value("civique_events_consumed_total", labels) or 0.0


async def test_an_unknown_event_type_is_dead_lettered_and_every_dead_letter_is_counted(platform):
    _, bus = platform
    dead: list[Message] = []

    async def record_dead(message: Message) -> None:
        dead.append(message)

    watcher = bus.subscribe("dlq-watch", [dead_letter_topic("missions.mission")], record_dead)
    await watcher.start()
    group = f"unknown-{uuid.uuid4().hex[:8]}"
    projection = Projection()
    member = runner(platform, projection, group=group)
    await member.start()
    try:
        teleported = reopened("m1", 1).model_copy(update={"type": "MissionTeleported"})  # well-formed, unknown
        not_subscribed = MissionFilled(mission_id="m1", organization_id="o").envelope(2)
        await publish(bus, [teleported, not_subscribed])
        await bus.publish([OutgoingMessage("missions.mission", "m1", b"not json")])
        await publish(bus, [reopened("m1", 4)])
        await eventually(lambda: projection.handled_at_least(1), what="the good event")

        async def two_dead() -> bool:
            return len(dead) >= 2

        await eventually(two_dead, what="two dead letters")

        async def all_counted() -> bool:
            return [consumed(group, o) for o in ("handled", "ignored", "dead_lettered")] == [1, 1, 2]

        await eventually(all_counted, what="each outcome counted")
    finally:
        await member.stop()
        await watcher.stop()
    assert projection.handled == [4]
    assert sorted(dict(m.headers)["x-error-type"] for m in dead) == [b"UnknownEventType", b"ValidationError"]


async def test_a_starting_consumer_logs_the_backlog_it_finds_and_when_it_is_drained(platform):
    _, bus = platform
    group = f"backlog-{uuid.uuid4().hex[:8]}"
    await publish(bus, [reopened("m1", v) for v in range(1, 5)] + [reopened("m2", 1)])
    projection = Projection()
    member = runner(platform, projection, group=group)
    with structlog.testing.capture_logs() as logs:
        await member.start()
        try:
            await eventually(lambda: projection.handled_at_least(5), what="the backlog handled")

            async def drained() -> bool:
                await member.report_lag()
                return any(line["event"] == "backlog_drained" for line in logs)

            await eventually(drained, what="the backlog reported drained")
        finally:
            await member.stop()
    found = next(line for line in logs if line["event"] == "backlog_found")
    assert (found["group"], found["backlog"]) == (group, 5)
    done = next(line for line in logs if line["event"] == "backlog_drained")
    assert (done["group"], done["drained"]) == (group, 5)


class Writes:
    """Counts the round trips of batched writes a store makes."""

    def __init__(self, documents) -> None:
        self.calls: list[int] = []
        self._write = documents.inner.write
        documents.inner.write = self

    async def __call__(self, writes) -> None:
        self.calls.append(len(writes))
        await self._write(writes)


async def test_a_batch_of_events_writes_its_read_models_in_one_round_trip(platform):
    storage, bus = platform
    writes = Writes(storage.documents)

    async def count(event: MissionReopened, envelope: Envelope) -> None:
        doc = await storage.documents.get("counts", event.mission_id) or {"n": 0}
        await storage.documents.put("counts", event.mission_id, {"n": doc["n"] + 1})

    await publish(bus, [reopened("m1", v) for v in range(1, 51)])  # queued before the group starts: one poll
    member = ConsumerRunner(Subscriber("counting", {MissionReopened: count}), bus, storage.documents)
    await member.start()
    try:

        async def all_counted() -> bool:
            return (await storage.documents.get("counts", "m1") or {}).get("n") == 50

        await eventually(all_counted, what="fifty events counted")
    finally:
        await member.stop()
    assert len(writes.calls) < 50 and sum(writes.calls) < 100  # not a write per event, not two


async def test_a_paused_group_waits_and_goes_on_where_it_stopped(platform):
    storage, bus = platform
    projection = Projection()
    member = runner(platform, projection, group="paused")
    await pause_group(storage.documents, "paused", by="replay")
    await member.start()
    try:
        await publish(bus, [reopened("m1", v) for v in (1, 2, 3)])

        async def holding() -> bool:
            return member.paused == "replay"

        await eventually(holding, what="the member to see the pause")
        assert projection.handled == []
        assert member.health() == "ok"  # held by an operator: not stuck
        await resume_group(storage.documents, "paused")
        await eventually(lambda: projection.handled_at_least(3), what="the events after the pause")
    finally:
        await member.stop()
    assert projection.handled == [1, 2, 3]


async def test_a_write_refused_at_the_flush_hands_the_batch_over_one_by_one(platform):
    storage, bus = platform
    dead: list[Message] = []

    async def record_dead(message: Message) -> None:
        dead.append(message)

    watcher = bus.subscribe("dlq-watch-flush", [dead_letter_topic("missions.mission")], record_dead)
    await watcher.start()
    await storage.documents.ensure_index("places", ["seat"], unique=True)
    await storage.documents.put("places", "taken", {"seat": 2})

    async def seat(event: MissionReopened, envelope: Envelope) -> None:
        await storage.documents.put("places", event.mission_id, {"seat": event.free_places})

    await publish(bus, [reopened(f"m{v}", v) for v in (1, 2, 3)])
    member = ConsumerRunner(Subscriber("seating", {MissionReopened: seat}), bus, storage.documents, backoff=0.001)
    await member.start()
    try:

        async def seated_and_refused() -> bool:
            seated = [await storage.documents.get("places", f"m{v}") for v in (1, 3)]
            return all(seated) and len(dead) == 1

        await eventually(seated_and_refused, what="the others seated and the colliding one dead-lettered")
    finally:
        await member.stop()
        await watcher.stop()
    assert await storage.documents.get("places", "m2") is None
    assert dict(dead[0].headers)["x-error-type"] == b"DuplicateKeyError"


async def test_an_event_republished_beyond_the_remembered_ids_is_absorbed_by_its_version_guard(platform):
    storage, bus = platform

    async def project(event: MissionReopened, envelope: Envelope) -> None:
        doc = await fresh_document(storage.documents, "reopenings", envelope.stream_id, envelope)
        if doc is not None:
            await storage.documents.put("reopenings", envelope.stream_id, {**doc, "n": doc.get("n", 0) + 1})

    first = reopened("m1", 1)
    later = [reopened("m1", v) for v in range(2, REMEMBERED_IDS + 3)]
    member = ConsumerRunner(Subscriber("guarded", {MissionReopened: project}), bus, storage.documents)
    await member.start()
    try:
        await publish(bus, [first, *later, first])  # the first again, once its id left the window

        async def all_projected() -> bool:
            return (await storage.documents.get("reopenings", "m1") or {}).get("version") == REMEMBERED_IDS + 2

        await eventually(all_projected, what="every version projected")
        await eventually(lambda: _committed(bus, "guarded"), what="the republished event handled")
    finally:
        await member.stop()
    assert (await storage.documents.get("reopenings", "m1"))["n"] == REMEMBERED_IDS + 2


async def _committed(bus, group: str) -> bool:
    return not any((await bus.lag(group, ["missions.mission"])).values())
