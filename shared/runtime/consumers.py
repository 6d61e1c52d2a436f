"""The consumer runner: what every subscription of every service goes through.

The bus hands over what one poll brought of a partition (a batch, in order; partitions side by side).
Per batch: read the partition's position (one record per group and partition, ADR 0009) → per message:
skip it if the position is past its offset or its event id is among the last ones handled there, else
parse → handle with bounded retries and backoff → on a poison message or exhausted retries, publish it to
`<topic>.dlq` with the error and go on → apply the batch's read-model writes in one round trip
(`BatchedDocuments`) → record the position → the bus commits the offset after the batch.

Handlers must still be idempotent: a crash after the writes and before the position record hands the
batch over once more (no multi-document transactions on FerretDB to make both one write), and a relay
that republished an event beyond the window of remembered ids delivers it again; projections guard with
stream versions (`fresh_document`), other handlers with keys of their own.

Two kinds of failure, two policies (see `is_transient`):
- a *handler failure* (a bug, a poison message, a rule the event breaks) consumes the attempt budget
  (`max_attempts`, backoff doubling from `backoff`); once spent, the message goes to the DLQ;
- an *infrastructure outage* (the store or the bus unreachable, SQLite locked or out of disk) says
  nothing about the message: every store and bus call of the runner, the handler's included, is
  retried with backoff capped at `max_backoff` for as long as the outage lasts, without touching the
  budget, so an outage never dead-letters anything. The partition waits meanwhile (its order holds),
  the lag grows and readiness reports the consumer stuck.
Anything else raised outside the handler (a store closed under the runner) ends the delivery task;
its supervisor restarts it with backoff, from the group's committed offsets.
"""

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from shared.events import Envelope, Event, UnknownEventType, catalog
from shared.runtime.batched import BatchedDocuments
from shared.runtime.metrics import CONSUMER_LAG, DEAD_LETTERS, EVENTS_CONSUMED, HANDLER_SECONDS
from shared.runtime.ports import (
    DocumentStore,
    DuplicateKeyError,
    EventBus,
    Message,
    OutgoingMessage,
    Projection,
    Subscription,
    Unavailable,
)

log = structlog.get_logger("civique.consumer")

POSITIONS, CONTROL = "consumer_positions", "consumer_control"
REMEMBERED_IDS = 500  # per partition: what a relay restart republishes (one relay batch at most, ADR 0009)
EventHandler = Callable[[Any, Envelope], Awaitable[None]]
T = TypeVar("T")
SQLITE_TRANSIENT = ("locked", "busy", "disk", "unable to open", "i/o")


def dead_letter_topic(topic: str) -> str:
    """Where a consumer group parks what it could not handle."""
    return f"{topic}.dlq"


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is an infrastructure outage that retrying later will get past.

    Transient: another service unreachable (`Unavailable`), the MongoDB-protocol server unreachable
    (pymongo's ConnectionFailure: AutoReconnect,
    NetworkTimeout, ServerSelectionTimeoutError, WaitQueueTimeoutError), SQLite busy, locked, out of disk
    or unable to open its file, a Kafka broker unreachable or a retriable Kafka error. Not transient:
    everything else, including a store that refuses a document (validation, duplicate key) or was closed.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Unavailable | ConnectionFailure | KafkaConnectionError | KafkaTimeoutError):
            return True
        if isinstance(current, KafkaError) and getattr(current, "retriable", False):
            return True
        if isinstance(current, sqlite3.OperationalError) and any(
            word in str(current).lower() for word in SQLITE_TRANSIENT
        ):
            return True
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


@dataclass(frozen=True)
class Subscriber:
    """A consumer group: which events it handles, and how. Its topics follow from the event classes.

    A group that declares `read_models`, the collections it alone writes, can have them rebuilt from the events
    by a replay (ADR 0011), which runs its `projections` only: they write those collections, through the store
    they are given, and nothing else (no e-mail, no append, no call to another service). Where the group also
    reacts to an event (a roster closed, a mission published), its handlers do both, and `projections` holds
    the projection part alone.
    """

    group: str
    handlers: Mapping[type[Event], EventHandler]
    read_models: tuple[str, ...] = ()
    projections: Mapping[type[Event], Projection] = field(default_factory=dict)
    # partitions side by side in a member, and within a batch the records of different keys (each key's in
    # order): only for handlers whose documents each follow one stream (a document fed by several streams
    # under different keys would lose an update to a concurrent write)
    concurrent: bool = False
    # records of a partition per batch: small for slow handlers (a password hash), so a partition that moves
    # to another member mid-batch is handled twice for a moment, not for a minute
    batch: int = 500

    def __post_init__(self) -> None:
        if bool(self.read_models) != bool(self.projections):
            raise ValueError(f"{self.group}: read models and their projections go together")
        if stray := [cls.__name__ for cls in self.projections if cls not in self.handlers]:
            raise ValueError(f"{self.group}: projections of events the group does not consume: {stray}")

    @classmethod
    def projecting(
        cls,
        group: str,
        documents: DocumentStore,
        projections: Mapping[type[Event], Projection],
        read_models: Sequence[str],
    ) -> "Subscriber":
        """A group that only projects: its handlers are its projections, writing to `documents`."""
        handlers = {event: partial(projection, documents) for event, projection in projections.items()}
        return cls(group, handlers, tuple(read_models), projections)

    @property
    def topics(self) -> list[str]:
        return sorted({cls.topic for cls in self.handlers})

    def handler_for(self, event_type: str) -> tuple[type[Event], EventHandler] | None:
        for cls, handler in self.handlers.items():
            if cls.event_type() == event_type:
                return cls, handler
        return None


class PermanentError(Exception):
    """Retrying cannot help (unreadable message, unknown schema): dead-letter at once."""


class ConsumerRunner:
    """Runs one consumer group's handlers on the bus: dedupe, retries, dead letters, lag and health."""

    def __init__(
        self,
        subscriber: Subscriber,
        bus: EventBus,
        documents: DocumentStore,
        *,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        stuck_after: float = 300.0,
    ) -> None:
        self.subscriber, self.bus = subscriber, bus
        # the handlers write through the service's BatchedDocuments: a plain store gets no batching
        self.documents = documents if isinstance(documents, BatchedDocuments) else BatchedDocuments(documents)
        self.max_attempts, self.backoff, self.max_backoff = max_attempts, backoff, max_backoff
        self.stuck_after = stuck_after
        self.subscription: Subscription = bus.subscribe_batches(
            subscriber.group, subscriber.topics, self.on_batch, concurrent=subscriber.concurrent, batch=subscriber.batch
        )
        self.paused: str | None = None  # why the group is paused (a replay of its read models), as last read
        self._positions: dict[tuple[str, int], Position] = {}
        self._control_read_at = 0.0
        self.lag: dict[tuple[str, int], int] = {}  # the group's committed lag, as last read
        self.last_progress = time.monotonic()  # when a message was last done with (any outcome)
        self._waiting_since: float | None = None  # since when this member's partitions have had a lag
        self._backlog_at_start: tuple[int, float] | None = None

    @property
    def group(self) -> str:
        return self.subscriber.group

    async def find_backlog(self, *, within: float = 2.0) -> None:
        """Log the backlog the group has before this member starts (its committed lag), for the record of a
        recovery; `report_lag` logs "backlog_drained" once the group's lag is down to nothing."""
        try:
            async with asyncio.timeout(within):
                lag = await self.bus.lag(self.group, self.subscriber.topics)
        except Exception as exc:
            log.warning("backlog_unknown", group=self.group, error=type(exc).__name__)
            return
        self._set_lag(lag)
        backlog = sum(lag.values())
        log.info(
            "backlog_found",
            group=self.group,
            backlog=backlog,
            partitions={f"{t}/{p}": n for (t, p), n in sorted(lag.items()) if n},
        )
        if backlog:
            self._backlog_at_start = (backlog, time.monotonic())

    async def start(self, *, find_backlog: bool = True) -> None:
        """Join the group (after logging the backlog it has, unless the caller did it already)."""
        if find_backlog:
            await self.find_backlog()
        self.last_progress = time.monotonic()
        await self.subscription.start()

    async def stop(self) -> None:
        await self.subscription.stop()
        self._positions.clear()

    async def report_lag(self) -> None:
        """Read the group's committed lag from the bus into `civique_consumer_lag` (per partition)."""
        self._set_lag(await self.bus.lag(self.group, self.subscriber.topics))

    def _set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        self.lag = lag
        for (topic, partition), n in lag.items():
            CONSUMER_LAG.labels(self.group, topic, str(partition)).set(n)
        owned = self.subscription.assignment()
        if any(n for tp, n in lag.items() if tp in owned):
            self._waiting_since = self._waiting_since or time.monotonic()
        else:
            self._waiting_since = None
        if self._backlog_at_start is not None and not any(lag.values()):
            backlog, since = self._backlog_at_start
            self._backlog_at_start = None
            log.info("backlog_drained", group=self.group, drained=backlog, seconds=round(time.monotonic() - since, 1))

    def health(self) -> str:
        """Either "ok" or why not: the delivery task is not running, or it made no progress for `stuck_after`
        seconds while partitions it owns have a lag."""
        status = self.subscription.status()
        if status != "ok":
            return status
        if self._waiting_since is not None:
            idle = time.monotonic() - max(self._waiting_since, self.last_progress)
            if idle > self.stuck_after:
                owned = self.subscription.assignment()
                lag = sum(n for tp, n in self.lag.items() if tp in owned)
                return f"stuck: lag {lag}, no progress for {idle:.0f} s"
        return "ok"

    async def on_batch(self, messages: Sequence[Message]) -> None:
        """Handle what one poll brought of a partition (the bus commits the offset after it once this returns)."""
        first = messages[0]
        await self._while_paused(first)
        before = await self._position(first)
        position = before.copy()  # the kept one changes only once the batch is written
        try:
            async with self.documents.batch():
                outcomes = await self._handle_batch(messages, position)
                # with the batch's read models: one round trip, one transaction on SQLite
                await self.documents.put(POSITIONS, position.doc_id, position.document())
                await self._outlasting(self.documents.flush, messages[-1], "write_batch")
        except DuplicateKeyError:  # the batch's writes collided with a document: one by one, as they come
            log.warning("batch_write_conflict", group=self.group, topic=first.topic, partition=first.partition)
            position = before.copy()
            outcomes = [await self.on_message(message, position) for message in messages]
            await self._outlasting(lambda: position.write(self.documents), messages[-1], "position")
        self._positions[(first.topic, first.partition)] = position
        for message, outcome in zip(messages, outcomes, strict=True):
            EVENTS_CONSUMED.labels(self.group, message.topic, outcome).inc()
        self.last_progress = time.monotonic()

    async def _position(self, message: Message) -> "Position":
        """The partition's position: kept from this member's last batch while it owns the partition, read from
        the store otherwise (another member may have moved it meanwhile)."""
        owned = self.subscription.assignment()
        for partition in [tp for tp in self._positions if tp not in owned]:
            del self._positions[partition]
        known = self._positions.get((message.topic, message.partition))
        if known is not None:
            return known
        return await self._outlasting(lambda: Position.read(self.documents, self.group, message), message, "position")

    async def _handle_batch(self, messages: Sequence[Message], position: "Position") -> list[str]:
        """The batch's records in order; for a `concurrent` group, each key's in order and the keys side by side,
        the position moving to the batch's last offset once all are handled."""
        if not self.subscriber.concurrent:
            return [await self.on_message(message, position) for message in messages]
        by_key: dict[str, list[Message]] = {}
        for message in messages:
            by_key.setdefault(message.key, []).append(message)
        outcomes: dict[int, str] = {}

        async def in_order(same_key: list[Message]) -> None:
            for message in same_key:
                outcomes[message.offset] = await self.on_message(message, position, advance=False)

        keys = [asyncio.ensure_future(in_order(same_key)) for same_key in by_key.values()]
        try:
            await asyncio.gather(*keys)
        except BaseException:  # none outlives the batch: its writes are dropped, its records delivered again
            for key in keys:
                key.cancel()
            await asyncio.gather(*keys, return_exceptions=True)
            raise
        position.offset = max(position.offset, messages[-1].offset)
        return [outcomes[message.offset] for message in messages]

    async def on_message(self, message: Message, position: "Position", *, advance: bool = True) -> str:
        """Handle one delivered record of the batch, unless its position says it was; returns the outcome."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            group=self.group, topic=message.topic, partition=message.partition, offset=message.offset
        )
        if message.offset <= position.offset:
            return "duplicate"
        outcome = await self._on_message(message, position)
        if advance:
            position.offset = message.offset
        return outcome

    async def _while_paused(self, message: Message) -> None:
        """Wait while an operator holds the group (a replay rebuilding its read models); the control record
        is read at most once a second."""
        while True:
            if time.monotonic() - self._control_read_at >= 1.0:
                control = await self._outlasting(lambda: self.documents.get(CONTROL, self.group), message, "control")
                self._control_read_at = time.monotonic()
                paused = (control or {}).get("paused_by")
                if paused != self.paused:
                    log.info("consumer_paused" if paused else "consumer_resumed", group=self.group, by=paused)
                self.paused = paused
            if not self.paused:
                return
            self.last_progress = time.monotonic()
            await asyncio.sleep(1.0)

    async def _on_message(self, message: Message, position: "Position") -> str:
        try:
            envelope = Envelope.from_json(message.value)
        except ValidationError as exc:
            await self._dead_letter(message, exc, attempts=1)
            return "dead_lettered"
        structlog.contextvars.bind_contextvars(
            event_id=str(envelope.event_id),
            event_type=envelope.type,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
        )
        route = self.subscriber.handler_for(envelope.type)
        if route is None:
            if envelope.type in catalog:  # a known event this group does not subscribe to
                return "ignored"
            await self._dead_letter(message, UnknownEventType(f"unknown event type {envelope.type}"), attempts=1)
            return "dead_lettered"
        event_id = str(envelope.event_id)
        if event_id in position.recent:
            return "duplicate"
        outcome = await self._handle(message, envelope, *route)
        if outcome != "dead_lettered":  # an operator may replay it (dead-letters replay): handled then, not "seen"
            position.remember(event_id)
        return outcome

    def _outage_pause(self, outages: int) -> float:
        return float(min(self.max_backoff, max(self.backoff, 0.01) * 2 ** min(outages - 1, 20)))

    async def _waited_out(self, message: Message, step: str, error: BaseException, outages: int) -> None:
        EVENTS_CONSUMED.labels(self.group, message.topic, "outage_retried").inc()
        log.warning("infrastructure_unavailable", step=step, error=type(error).__name__, outages=outages)
        await asyncio.sleep(self._outage_pause(outages))

    async def _outlasting(self, call: Callable[[], Awaitable[T]], message: Message, step: str) -> T:
        """`call()`, retried with capped backoff for as long as it fails on an infrastructure outage."""
        outages = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                outages += 1
                await self._waited_out(message, step, exc, outages)

    async def _handle(self, message: Message, envelope: Envelope, cls: type[Event], handler: EventHandler) -> str:
        attempt = outages = 0
        while True:
            started = time.perf_counter()
            try:
                try:
                    event = catalog.decode(envelope)
                except (UnknownEventType, ValidationError) as exc:
                    raise PermanentError(str(exc)) from exc
                if not isinstance(event, cls):
                    raise PermanentError(f"{envelope.type} decoded as {type(event).__name__}")
                await handler(event, envelope)
                return "handled"
            except PermanentError as exc:
                await self._dead_letter(message, exc, attempts=attempt + 1)
                return "dead_lettered"
            except Exception as exc:
                if is_transient(exc):  # the handler's store or bus is down: not the message's fault
                    outages += 1
                    await self._waited_out(message, "handler", exc, outages)
                    continue
                attempt += 1
                if attempt >= self.max_attempts:
                    await self._dead_letter(message, exc, attempts=attempt)
                    return "dead_lettered"
                EVENTS_CONSUMED.labels(self.group, message.topic, "retried").inc()
                log.warning("handler_failed", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            finally:
                HANDLER_SECONDS.labels(self.group, message.topic).observe(time.perf_counter() - started)

    async def _dead_letter(self, message: Message, error: BaseException, *, attempts: int) -> None:
        headers = (
            *message.headers,
            ("x-group", self.group.encode()),
            ("x-error-type", type(error).__name__.encode()),
            ("x-error-message", str(error)[:1000].encode()),
            ("x-attempts", str(attempts).encode()),
            ("x-original-partition", str(message.partition).encode()),
            ("x-original-offset", str(message.offset).encode()),
        )
        letter = OutgoingMessage(dead_letter_topic(message.topic), message.key, message.value, headers)
        await self._outlasting(lambda: self.bus.publish([letter]), message, "dead_letter")
        DEAD_LETTERS.labels(self.group, message.topic).inc()
        log.error("dead_lettered", attempts=attempts, error_type=type(error).__name__)


@dataclass
class Position:
    """How far a group went in a partition: the last offset it finished, and the ids of the last events it
    handled there (a relay that restarts republishes its last batch under new offsets)."""

    doc_id: str
    offset: int = -1
    recent: dict[str, None] = field(default_factory=dict)  # an ordered set

    @classmethod
    async def read(cls, documents: DocumentStore, group: str, message: Message) -> "Position":
        doc_id = f"{group}:{message.topic}:{message.partition}"
        found = await documents.get(POSITIONS, doc_id)
        if found is None:
            return cls(doc_id)
        return cls(doc_id, found["offset"], dict.fromkeys(found["recent"]))

    def copy(self) -> "Position":
        return Position(self.doc_id, self.offset, dict(self.recent))

    def remember(self, event_id: str) -> None:
        self.recent[event_id] = None
        if len(self.recent) > REMEMBERED_IDS:
            for oldest in list(self.recent)[: len(self.recent) - REMEMBERED_IDS]:
                del self.recent[oldest]

    def document(self) -> dict[str, Any]:
        group, topic, partition = self.doc_id.rsplit(":", 2)
        doc = {"group": group, "topic": topic, "partition": int(partition), "offset": self.offset, "at": _now()}
        return {**doc, "recent": list(self.recent)}

    async def write(self, documents: DocumentStore) -> None:
        await documents.put(POSITIONS, self.doc_id, self.document())


async def pause_group(documents: DocumentStore, group: str, by: str) -> None:
    """Hold a consumer group in every process (within about a second): its members stop before their next
    batch until `resume_group`. For an operator's work on the group's read models (a replay)."""
    await documents.put(CONTROL, group, {"paused_by": by, "since": _now()})


async def resume_group(documents: DocumentStore, group: str) -> None:
    """Let a paused group's members go on from where they stopped."""
    await documents.delete(CONTROL, group)


def _now() -> str:
    return datetime.now(UTC).isoformat()
