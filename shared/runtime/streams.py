"""Loading an aggregate's events and appending new ones: the two steps of every command handler."""

from collections.abc import Sequence

import structlog

from shared.events import SYSTEM, Actor, Envelope, Event, catalog
from shared.runtime.ports import EventStore


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
