"""Missions service: organisations and the mission lifecycle."""

import asyncio
from datetime import UTC, datetime, timedelta

from services.missions import projections
from services.missions.api import router
from services.missions.consumers import subscribers
from services.missions.handlers import MissionsHandlers
from shared.runtime.app import Service, ServiceContext

DAILY = timedelta(days=1)


async def close_ended_missions_daily(ctx: ServiceContext) -> None:
    """The daily job of closing missions a month past their end date (idempotent: run it as often as you like)."""
    while True:
        await MissionsHandlers(ctx).close_ended_missions(datetime.now(UTC).date())
        await asyncio.sleep(DAILY.total_seconds())


service = Service(
    "missions",
    routers=[router],
    subscribers=subscribers,
    on_start=lambda ctx: projections.setup(ctx.documents),
    background=[close_ended_missions_daily],
)
