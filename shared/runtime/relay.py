"""The relay: publishes what services appended to their event store, in stream order, then marks it.

A crash between publishing and marking republishes on restart (at-least-once); consumers dedupe.
One relay per event store: two would race and interleave a stream's order on the bus.
"""

import asyncio
from collections import Counter

import structlog

from shared.runtime.metrics import EVENTS_PUBLISHED
from shared.runtime.ports import EventBus, EventStore, OutgoingMessage
from shared.runtime.tasks import Supervised, cancel, start_supervised

log = structlog.get_logger("civique.relay")


class Relay:
    def __init__(
        self,
        service: str,
        store: EventStore,
        bus: EventBus,
        *,
        interval: float = 0.05,
        batch: int = 500,
        linger: float = 0.005,
    ):
        self.service, self.store, self.bus = service, store, bus
        self.interval, self.batch, self.linger = interval, batch, linger
        self._task: Supervised | None = None

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished events; returns how many were published."""
        pending = await self.store.unpublished(self.batch)
        if not pending:
            return 0
        events = [e for batch in pending for e in batch.events]
        await self.bus.publish([OutgoingMessage.of(e) for e in events])
        await self.store.mark_published(pending)
        for topic, n in Counter(e.topic for e in events).items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
        return len(events)

    async def run(self) -> None:
        """Publish forever: at once while there is a backlog or after an append here, every `interval` otherwise."""
        failures = 0
        while True:
            try:
                self.store.appended.reset()
                published = await self.publish_pending()
                failures = 0
            except Exception:
                failures += 1
                log.exception("relay_failed", service=self.service, attempt=failures)
                await asyncio.sleep(min(5.0, self.interval * 2**failures))
                continue
            if not published:
                await self.store.appended.wait(self.interval)
            if published < self.batch:  # a moment for the appends around this one: fewer, fuller batches
                await asyncio.sleep(self.linger)

    def start(self) -> None:
        """Publish in the background, restarted with backoff should the loop ever crash."""
        self._task = start_supervised(self.run, name=f"relay:{self.service}")

    def status(self) -> str:
        """Either "ok" while the relay runs, or why not (crashed and restarting, stopped)."""
        return self._task.status() if self._task is not None else "failed: not started"

    async def stop(self, *, drain_s: float = 0.0) -> int:
        """Stop the loop, then publish what is still pending for up to `drain_s` seconds; returns how many."""
        await cancel(self._task)
        self._task = None
        drained = 0
        if drain_s > 0:
            try:
                async with asyncio.timeout(drain_s):
                    while published := await self.publish_pending():
                        drained += published
            except Exception as exc:  # the store or the bus is down: what is left goes after the restart
                log.warning("relay_drain_incomplete", service=self.service, error=type(exc).__name__)
        return drained
