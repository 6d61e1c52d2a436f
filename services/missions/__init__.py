"""Missions service: organisations and the mission lifecycle."""

import asyncio
from datetime import UTC, datetime, timedelta

from services.missions import projections
from services.missions.api import router
from services.missions.consumers import subscribers
from services.missions.handlers import MissionsHandlers
from shared.runtime.app import Service, ServiceContext

DAILY = timedelta(days=1)


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the handlers, built once for the routes, the consumers and the daily job."""
    ctx.provide(MissionsHandlers(ctx))
    await projections.setup(ctx.documents)


async def close_ended_missions_daily(ctx: ServiceContext) -> None:
    """The daily job of closing missions a month past their end date (idempotent: run it as often as you like)."""
    while True:
        await ctx.component(MissionsHandlers).close_ended_missions(datetime.now(UTC).date())
        await asyncio.sleep(DAILY.total_seconds())


service = Service(
    "missions",
    routers=[router],
    subscribers=subscribers,
    on_start=setup,
    background=[close_ended_missions_daily],
)
