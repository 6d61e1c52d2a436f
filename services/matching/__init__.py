"""Matching service: mission search, recommendations both ways, invitations, territory balance, idle volunteers."""

import asyncio
from datetime import timedelta

from services.matching import projections
from services.matching.api import router
from services.matching.consumers import subscribers
from services.matching.handlers import MatchingHandlers
from shared.runtime.app import Service, ServiceContext

DAILY = timedelta(days=1)


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the handlers, built once; the indexes created, then the in-memory index built
    from the read model before serving."""
    await projections.setup(ctx.documents)
    handlers = ctx.provide(MatchingHandlers(ctx))
    await handlers.index.refresh(ctx.documents)


async def assess_territories_periodically(ctx: ServiceContext) -> None:
    """Raise and clear territory imbalances (idempotent: an unchanged department appends nothing)."""
    handlers = ctx.component(MatchingHandlers)
    while True:
        await handlers.follow_read_model()
        await handlers.assess_territories()
        await asyncio.sleep(ctx.settings.territory_interval_s)


async def detect_idle_volunteers_daily(ctx: ServiceContext) -> None:
    """VolunteerIdle at most once a month per volunteer (idempotent: run it as often as you like)."""
    handlers = ctx.component(MatchingHandlers)
    while True:
        await handlers.follow_read_model()
        await handlers.detect_idle()
        await asyncio.sleep(DAILY.total_seconds())


service = Service(
    "matching",
    routers=[router],
    subscribers=subscribers,
    on_start=setup,
    background=[assess_territories_periodically, detect_idle_volunteers_daily],
)
