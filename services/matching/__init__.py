"""Matching service: mission search, recommendations both ways, invitations, territory balance, idle volunteers."""

import asyncio
from datetime import timedelta

from services.matching import projections
from services.matching.api import router
from services.matching.consumers import subscribers
from services.matching.handlers import MatchingHandlers, index_of
from shared.runtime.app import Service, ServiceContext

DAILY = timedelta(days=1)


async def setup(ctx: ServiceContext) -> None:
    """Create the indexes, then build the in-memory index from the read model before serving."""
    await projections.setup(ctx.documents)
    await index_of(ctx).refresh(ctx.documents)


async def assess_territories_periodically(ctx: ServiceContext) -> None:
    """Raise and clear territory imbalances (idempotent: an unchanged department appends nothing)."""
    while True:
        handlers = MatchingHandlers(ctx)
        await handlers.follow_read_model()
        await handlers.assess_territories()
        await asyncio.sleep(ctx.settings.territory_interval_s)


async def detect_idle_volunteers_daily(ctx: ServiceContext) -> None:
    """VolunteerIdle at most once a month per volunteer (idempotent: run it as often as you like)."""
    while True:
        handlers = MatchingHandlers(ctx)
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
