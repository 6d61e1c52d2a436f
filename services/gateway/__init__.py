"""Gateway: accounts and roles, the public API (/api/v1), rate limits, idempotency keys."""

import asyncio

from services.gateway.api import router
from services.gateway.consumers import subscribers
from services.gateway.handlers import Accounts, intake_of
from shared.runtime.app import Service, ServiceContext

HOURLY = 3600.0


async def setup(ctx: ServiceContext) -> None:
    await Accounts(ctx).setup()


async def shred_expired_intake_keys_hourly(ctx: ServiceContext) -> None:
    """Intake keys past their retention are shredded: the commands they sealed become unreadable."""
    while True:
        await intake_of(ctx).shred_expired_keys()
        await asyncio.sleep(HOURLY)


service = Service(
    "gateway",
    public_routers=[router],
    subscribers=subscribers,
    on_start=setup,
    background=[shred_expired_intake_keys_hourly],
)
