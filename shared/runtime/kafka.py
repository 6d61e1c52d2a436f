"""Production event bus on Apache Kafka through aiokafka.

Idempotent producer (acks=all), key = aggregate id; consumers commit offsets by hand after the
handler returned, so a crash redelivers (at-least-once) and never skips.
"""

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from shared.runtime.ports import Message, MessageHandler, OutgoingMessage
from shared.runtime.tasks import Supervised, cancel, start_supervised

log = structlog.get_logger("civique.kafka")


class KafkaEventBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        namespace: str = "",
        partitions: int = 4,
        session_timeout_ms: int = 10_000,
        client_id: str = "civique",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
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
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=2,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the configured partition count (auto-creation would use the broker's)."""
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
                new = [NewTopic(t, self.partitions, 1) for t in missing if t not in existing]
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
        producer = await self._started_producer()
        # send() only enqueues; per-partition order holds because the producer is idempotent
        pending = [
            await producer.send(self.name(m.topic), m.value, key=m.key.encode(), headers=list(m.headers))
            for m in messages
        ]
        await asyncio.gather(*pending)

    def subscribe(self, group: str, topics: Sequence[str], handler: MessageHandler) -> "KafkaSubscription":
        return KafkaSubscription(self, group, list(topics), handler)

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


class KafkaSubscription:
    def __init__(self, bus: KafkaEventBus, group: str, topics: list[str], handler: MessageHandler) -> None:
        self.bus, self.group, self.topics, self.handler = bus, group, topics, handler
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
        self._task = start_supervised(self._loop, name=f"consumer:{self.group}")

    async def stop(self) -> None:
        await cancel(self._task)
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
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    async def _loop(self) -> None:
        assert self._consumer is not None
        consumer, prefix = self._consumer, len(self.bus.namespace)
        await self._rewind(consumer)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                handled = None
                try:
                    for record in records:
                        await self.handler(
                            Message(
                                topic=record.topic[prefix:],
                                key=(record.key or b"").decode(),
                                value=record.value or b"",
                                headers=tuple(record.headers or ()),
                                partition=record.partition,
                                offset=record.offset,
                            )
                        )
                        handled = record.offset
                finally:
                    if handled is not None:
                        await self._commit(consumer, tp, handled + 1)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, KafkaError) as exc:
            # the partition moved to another member during a rebalance: it will redeliver, consumers dedupe
            log.warning("commit_failed", group=self.group, topic=tp.topic, partition=tp.partition, error=str(exc))
