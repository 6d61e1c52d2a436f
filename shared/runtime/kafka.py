"""Production event bus on Apache Kafka through aiokafka.

Idempotent producer (acks=all), key = aggregate id; consumers commit offsets by hand after the
handler returned, so a crash redelivers (at-least-once) and never skips.
"""

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError

from shared.runtime.ports import (
    BatchHandler,
    HistoryLost,
    Message,
    MessageHandler,
    Offsets,
    OutgoingMessage,
    hand_over,
)
from shared.runtime.tasks import Supervised, finish, start_supervised
from shared.runtime.topics import topic_config

log = structlog.get_logger("civique.kafka")
T = TypeVar("T")


class KafkaEventBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        namespace: str = "",
        partitions: int = 4,
        session_timeout_ms: int = 10_000,
        client_id: str = "civique",
        max_poll_records: int = 500,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.max_poll_records = max_poll_records
        self.namespace = namespace
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._topics_lock = asyncio.Lock()
        self._known_topics: set[str] = set()
        self._offsets_lock = asyncio.Lock()
        self._offsets: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None  # clients for `lag`

    def name(self, topic: str) -> str:
        """The broker-side name of a topic (namespaced, so test runs never see each other)."""
        return f"{self.namespace}{topic}"

    async def _started_producer(self) -> AIOKafkaProducer:
        from shared.runtime.partitioner import partition

        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    enable_idempotence=True,
                    acks="all",
                    partitioner=partition,  # the default's partitions, a fifth of its murmur2's CPU
                    # no lingering: with one request in flight per broker, what arrives meanwhile makes the next
                    # batch (about 14 sign-ups a request in a spike), and a 202 never waits for a timer
                    linger_ms=0,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the configured partition count (auto-creation would use the broker's) and the
        configuration `shared.runtime.topics` declares: records kept forever, read models are rebuilt from them
        (ADR 0011)."""
        if all(self.name(t) in self._known_topics for t in topics):
            return
        async with self._topics_lock:  # a burst of first publishes makes one admin round trip, not one each
            missing = [self.name(t) for t in topics if self.name(t) not in self._known_topics]
            if not missing:
                return
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                new = [
                    NewTopic(t, self.partitions, 1, topic_configs=topic_config(t[len(self.namespace) :]))
                    for t in missing
                    if t not in existing
                ]
                if new:
                    with contextlib.suppress(TopicAlreadyExistsError):
                        await admin.create_topics(new)
            finally:
                await admin.close()
            self._known_topics.update(missing)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        await self.ensure_topics(sorted({m.topic for m in messages}))
        producer = self._producer or await self._started_producer()  # the lock only until it exists
        # send() only enqueues; per-partition order holds because the producer is idempotent
        pending = [
            await producer.send(self.name(m.topic), m.value, key=m.key.encode(), headers=list(m.headers))
            for m in messages
        ]
        for sent in pending:  # awaited in turn: gather's own future and callbacks cost a sign-up more than this
            await sent

    def subscribe(self, group: str, topics: Sequence[str], handler: MessageHandler) -> "KafkaSubscription":
        return KafkaSubscription(self, group, list(topics), handler, batched=False)

    def subscribe_batches(
        self, group: str, topics: Sequence[str], handler: BatchHandler, *, concurrent: bool = False, batch: int = 500
    ) -> "KafkaSubscription":
        return KafkaSubscription(self, group, list(topics), handler, batched=True, concurrent=concurrent, batch=batch)

    async def _offsets_clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        """An admin client and a group-less consumer, kept for `lag` and `ping` (a client per call would
        cost a connection each time the gauges are read)."""
        async with self._offsets_lock:
            if self._offsets is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
                consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
                try:
                    await admin.start()
                    await consumer.start()
                except BaseException:  # the broker is down, or the caller gave up: leave nothing behind
                    await consumer.stop()
                    await admin.close()
                    raise
                self._offsets = admin, consumer
            return self._offsets

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """The group's committed lag per partition, read from the broker like KEDA's Kafka scaler does."""
        await self.ensure_topics(topics)
        admin, consumer = await self._offsets_clients()
        tps = [TopicPartition(self.name(t), p) for t in topics for p in range(self.partitions)]
        committed = await admin.list_consumer_group_offsets(self.name(group), partitions=tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        prefix = len(self.namespace)
        lags = {}
        for tp in tps:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lags[(tp.topic[prefix:], tp.partition)] = max(0, ends[tp] - max(offset, starts[tp]))
        return lags

    async def last_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        await self.ensure_topics(topics)
        _, consumer = await self._offsets_clients()
        tps = [TopicPartition(self.name(t), p) for t in topics for p in range(self.partitions)]
        ends = await consumer.end_offsets(tps)
        prefix = len(self.namespace)
        return {(tp.topic[prefix:], tp.partition): ends[tp] - 1 for tp in tps}

    async def history_size(self, topics: Sequence[str], until: Offsets, after: Offsets | None = None) -> int:
        return sum(last - first for first, last in (await self._history_bounds(topics, until, after)).values())

    async def _history_bounds(
        self, topics: Sequence[str], until: Offsets, after: Offsets | None
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(after, until] per partition that has records in between; HistoryLost if the broker deleted some."""
        after = after or {}
        spans = {
            TopicPartition(self.name(topic), partition): (after.get((topic, partition), -1), last)
            for (topic, partition), last in until.items()
            if topic in topics
        }
        if not spans:
            return {}
        _, consumer = await self._offsets_clients()
        starts = await consumer.beginning_offsets(list(spans))
        lost = [
            f"{tp.topic}/{tp.partition}"
            for tp, (first, last) in spans.items()
            if first < last and starts[tp] > first + 1
        ]
        if lost:
            raise HistoryLost(f"records deleted by retention in {', '.join(lost)} (set retention.ms=-1)")
        return {tp: span for tp, span in spans.items() if span[1] > span[0]}

    async def history(
        self, topics: Sequence[str], until: Offsets, after: Offsets | None = None
    ) -> AsyncGenerator[list[Message], None]:
        """Read by a consumer of no group, partitions assigned by hand; partitions merged by record timestamp."""
        bounds = await self._history_bounds(topics, until, after)
        if not bounds:
            return
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await reader.start()
        try:
            reader.assign(list(bounds))
            for tp, (first, _) in bounds.items():
                reader.seek(tp, first + 1)
            prefix = len(self.namespace)
            async for records in HistoryReader(reader, bounds).batches():
                yield [
                    Message(r.topic[prefix:], (r.key or b"").decode(), r.value or b"", (), r.partition, r.offset)
                    for r in records
                ]
        finally:
            await reader.stop()

    async def ping(self) -> None:
        admin, _ = await self._offsets_clients()
        await admin.list_topics()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._offsets is not None:
            admin, consumer = self._offsets
            self._offsets = None
            await consumer.stop()
            await admin.close()


def by_partition(
    batches: dict[TopicPartition, list[Any]], concurrent: bool
) -> dict[int, list[tuple[TopicPartition, list[Any]]]]:
    """A poll's batches in the order they are handled: partition p of every topic holds the same aggregates
    (co-partitioning, ADR 0002), so each number is handled in order, topic after topic; different numbers
    side by side when `concurrent`, else all of them one after the other."""
    grouped: dict[int, list[tuple[TopicPartition, list[Any]]]] = {}
    for tp, records in sorted(batches.items(), key=lambda item: (item[0].partition, item[0].topic)):
        grouped.setdefault(tp.partition if concurrent else 0, []).append((tp, records))
    return grouped


class Closing(Exception):
    """A subscription closed while it waited on the broker."""


class KafkaSubscription:
    def __init__(
        self,
        bus: KafkaEventBus,
        group: str,
        topics: list[str],
        handler: MessageHandler | BatchHandler,
        *,
        batched: bool,
        concurrent: bool = False,
        batch: int = 500,
    ) -> None:
        self.bus, self.group, self.topics, self.handler, self.batched = bus, group, topics, handler, batched
        self.concurrent, self.batch = concurrent, batch
        self._closing = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: Supervised | None = None

    async def start(self) -> None:
        await self.bus.ensure_topics(self.topics)
        session = self.bus.session_timeout_ms
        self._consumer = AIOKafkaConsumer(
            *(self.bus.name(t) for t in self.topics),
            bootstrap_servers=self.bus.bootstrap_servers,
            client_id=self.bus.client_id,
            group_id=self.bus.name(self.group),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session,
            heartbeat_interval_ms=max(100, session // 4),
            # co-partitioning: partition p of every topic goes to one member, so the events of an aggregate
            # id on several topics are handled by one member, in order (as the embedded bus does)
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await self._consumer.start()
        self._closing.clear()
        self._task = start_supervised(self._loop, name=f"consumer:{self.group}")

    async def stop(self) -> None:
        await finish(self._task, self._closing)
        self._task = None
        if self._consumer:
            await self._consumer.stop()  # leaves the group: the others rebalance at once
            self._consumer = None

    def assignment(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        prefix = len(self.bus.namespace)
        return {(tp.topic[prefix:], tp.partition) for tp in self._consumer.assignment()}

    def status(self) -> str:
        return self._task.status() if self._task is not None else "failed: not started"

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Back to the group's committed offsets: a run that crashed left positions past unhandled records."""
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            with contextlib.suppress(IllegalStateError):  # taken away by a rebalance meanwhile: its new owner rewinds
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)

    async def _loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        try:
            await self._unless_closing(self._rewind(consumer))
            while not self._closing.is_set():
                owned = max(1, len(consumer.assignment()))
                batches = await self._unless_closing(
                    consumer.getmany(timeout_ms=500, max_records=min(self.bus.max_poll_records, self.batch * owned))
                )
                async with asyncio.TaskGroup() as partitions:
                    for same_partition in by_partition(batches, self.concurrent).values():
                        partitions.create_task(self._deliver_each(consumer, same_partition))
        except Closing:
            return

    async def _unless_closing(self, wait: Coroutine[Any, Any, T]) -> T:
        """`wait`'s result, or Closing once the subscription closes first: a wait on the broker (a poll, a seek
        through a rebalance) holds no work in hand, so a stop does not wait for it."""
        waiting, closing = asyncio.ensure_future(wait), asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiting.cancel()
            raise
        finally:
            closing.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        raise Closing()

    async def _deliver_each(self, consumer: AIOKafkaConsumer, batches: list[tuple[TopicPartition, list[Any]]]) -> None:
        for tp, records in batches:
            await self._deliver(consumer, tp, records)

    async def _deliver(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[Any]) -> None:
        prefix = len(self.bus.namespace)
        messages = [
            Message(
                topic=record.topic[prefix:],
                key=(record.key or b"").decode(),
                value=record.value or b"",
                headers=tuple(record.headers or ()),
                partition=record.partition,
                offset=record.offset,
            )
            for record in records
        ]
        await hand_over(messages, self.handler, self.batched, lambda offset: self._commit(consumer, tp, offset))

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, KafkaError) as exc:
            # the partition moved to another member during a rebalance: it will redeliver, consumers dedupe
            log.warning("commit_failed", group=self.group, topic=tp.topic, partition=tp.partition, error=str(exc))


class HistoryReader:
    """Records of assigned partitions up to their last offsets, merged across partitions by timestamp: a record
    is delivered once every partition still being read has shown a record at least as recent."""

    def __init__(self, reader: AIOKafkaConsumer, bounds: dict[TopicPartition, tuple[int, int]]) -> None:
        self.reader, self.last = reader, {tp: last for tp, (_, last) in bounds.items()}
        self.buffers: dict[TopicPartition, deque[Any]] = {tp: deque() for tp in bounds}
        self.reading = set(bounds)  # partitions with records still to fetch

    async def batches(self) -> AsyncIterator[list[Any]]:
        while self.reading or any(self.buffers.values()):
            starving = [tp for tp in self.reading if not self.buffers[tp]]
            if starving:
                await self._fetch(starving)
                if any(tp in self.reading and not self.buffers[tp] for tp in starving):
                    continue
            horizon = min((self.buffers[tp][-1].timestamp for tp in self.reading), default=None)
            ready = [self._take(tp, horizon) for tp in self.buffers]
            # heapq.merge only compares heads: each partition's records keep their order
            batch = list(heapq.merge(*ready, key=lambda r: r.timestamp))
            if batch:
                yield batch

    async def _fetch(self, partitions: list[TopicPartition]) -> None:
        fetched = await self.reader.getmany(*partitions, timeout_ms=1000, max_records=5000)
        for tp in partitions:
            records = fetched.get(tp, [])
            self.buffers[tp].extend(r for r in records if r.offset <= self.last[tp])
            # past the last offset (or at it): this partition is read
            if (records and records[-1].offset >= self.last[tp]) or await self.reader.position(tp) > self.last[tp]:
                self.reading.discard(tp)
                self.reader.pause(tp)

    def _take(self, tp: TopicPartition, horizon: int | None) -> list[Any]:
        buffer, taken = self.buffers[tp], []
        while buffer and (horizon is None or buffer[0].timestamp <= horizon):
            taken.append(buffer.popleft())
        return taken
