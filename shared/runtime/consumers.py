"""The consumer runner: what every subscription of every service goes through.

Per message: parse → skip if this group handled the event already (inbox, survives restarts) →
handle with bounded retries and backoff → on a poison message or exhausted retries, publish it to
`<topic>.dlq` with the error and go on → record the event id in the inbox → the bus commits.

Handlers must still be idempotent: a crash after handling and before the inbox record replays
the event once more (no multi-document transactions on FerretDB to make both one write).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from shared.events import Envelope, Event, UnknownEventType, catalog
from shared.runtime.metrics import CONSUMER_LAG, DEAD_LETTERS, EVENTS_CONSUMED, HANDLER_SECONDS
from shared.runtime.ports import DocumentStore, DuplicateKeyError, EventBus, Message, OutgoingMessage, Subscription

log = structlog.get_logger("civique.consumer")

INBOX = "inbox"
EventHandler = Callable[[Any, Envelope], Awaitable[None]]


def dead_letter_topic(topic: str) -> str:
    """Where a consumer group parks what it could not handle."""
    return f"{topic}.dlq"


@dataclass(frozen=True)
class Subscriber:
    """A consumer group: which events it handles, and how. Its topics follow from the event classes."""

    group: str
    handlers: Mapping[type[Event], EventHandler]

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
    def __init__(
        self,
        subscriber: Subscriber,
        bus: EventBus,
        inbox: DocumentStore,
        *,
        max_attempts: int = 5,
        backoff: float = 0.2,
    ) -> None:
        self.subscriber, self.bus, self.inbox = subscriber, bus, inbox
        self.max_attempts, self.backoff = max_attempts, backoff
        self.subscription: Subscription = bus.subscribe(subscriber.group, subscriber.topics, self.on_message)

    @property
    def group(self) -> str:
        return self.subscriber.group

    async def start(self) -> None:
        await self.subscription.start()

    async def stop(self) -> None:
        await self.subscription.stop()

    async def report_lag(self) -> None:
        CONSUMER_LAG.labels(self.group).set(await self.subscription.lag())

    async def on_message(self, message: Message) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            group=self.group, topic=message.topic, partition=message.partition, offset=message.offset
        )
        try:
            envelope = Envelope.from_json(message.value)
        except ValidationError as exc:
            await self._dead_letter(message, exc, attempts=1)
            return
        structlog.contextvars.bind_contextvars(
            event_id=str(envelope.event_id),
            event_type=envelope.type,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
        )
        route = self.subscriber.handler_for(envelope.type)
        if route is None:
            EVENTS_CONSUMED.labels(self.group, message.topic, "ignored").inc()
            return
        inbox_id = f"{self.group}:{envelope.event_id}"
        if await self.inbox.get(INBOX, inbox_id) is not None:
            EVENTS_CONSUMED.labels(self.group, message.topic, "duplicate").inc()
            return
        outcome = await self._handle(message, envelope, *route)
        with contextlib.suppress(DuplicateKeyError):  # another member handled it during a rebalance
            await self.inbox.insert(
                INBOX, inbox_id, {"group": self.group, "event_id": str(envelope.event_id), "at": _now()}
            )
        EVENTS_CONSUMED.labels(self.group, message.topic, outcome).inc()

    async def _handle(self, message: Message, envelope: Envelope, cls: type[Event], handler: EventHandler) -> str:
        for attempt in range(1, self.max_attempts + 1):
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
                await self._dead_letter(message, exc, attempts=attempt)
                return "dead_lettered"
            except Exception as exc:
                if attempt == self.max_attempts:
                    await self._dead_letter(message, exc, attempts=attempt)
                    return "dead_lettered"
                EVENTS_CONSUMED.labels(self.group, message.topic, "retried").inc()
                log.warning("handler_failed", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            finally:
                HANDLER_SECONDS.labels(self.group, message.topic).observe(time.perf_counter() - started)
        raise AssertionError("unreachable")

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
        await self.bus.publish([OutgoingMessage(dead_letter_topic(message.topic), message.key, message.value, headers)])
        DEAD_LETTERS.labels(self.group, message.topic).inc()
        log.error("dead_lettered", attempts=attempts, error_type=type(error).__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()
