"""Loading an aggregate's events and appending new ones: the two steps of every command handler."""

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import structlog

from shared.events import SYSTEM, Actor, Envelope, Event, catalog
from shared.runtime.ports import ConcurrencyError, EventStore


async def load_stream(store: EventStore, stream_id: str) -> tuple[list[Event], int]:
    """The stream's events (typed, upcast) and its version, for optimistic concurrency."""
    envelopes = await store.read(stream_id)
    return [catalog.decode(e) for e in envelopes], len(envelopes)


async def append_events(
    store: EventStore,
    stream_id: str,
    version: int,
    events: Sequence[Event],
    *,
    actor: Actor = SYSTEM,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> list[Envelope]:
    """Append `events` after `version` (ConcurrencyError if the stream moved); nothing when empty.

    The correlation id defaults to the one bound for the current request or consumed event.
    """
    if correlation_id is None:
        correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
    envelopes = [
        event.envelope(version + i, actor=actor, correlation_id=correlation_id, causation_id=causation_id)
        for i, event in enumerate(events, start=1)
    ]
    if envelopes:
        await store.append(stream_id, version, envelopes)
    return envelopes


async def decide_and_append(
    store: EventStore,
    stream_id: str,
    decide: Callable[[list[Event]], Awaitable[list[Event]]],
    *,
    actor: Actor | None = None,
    cause: Envelope | None = None,
    attempts: int = 3,
    jitter_s: float = 0.0,
) -> list[Event]:
    """Load a stream, decide new events from its history, append them; decide again on a concurrent write.

    The actor defaults to the cause's (a reaction to an event) or the system; ConcurrencyError after
    `attempts` (pass 1 for a person's command, who then gets a 409 and may retry knowingly). With
    `jitter_s`, retry n first waits up to n × jitter_s: a burst on one stream lets one writer through each time.
    """
    for attempt in range(1, attempts + 1):
        history, version = await load_stream(store, stream_id)
        new = await decide(history)
        try:
            await append_events(
                store,
                stream_id,
                version,
                new,
                actor=actor or (cause.actor if cause else SYSTEM),
                correlation_id=cause.correlation_id if cause else None,
                causation_id=str(cause.event_id) if cause else None,
            )
            return new
        except ConcurrencyError:
            if attempt == attempts:
                raise
            if jitter_s:
                await asyncio.sleep(random.uniform(0, jitter_s * attempt))
    raise AssertionError("unreachable")
