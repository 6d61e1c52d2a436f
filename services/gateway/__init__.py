"""Gateway: accounts and roles, the public API (/api/v1), rate limits, idempotency keys."""

import asyncio

from services.gateway.api import router
from services.gateway.consumers import subscribers
from services.gateway.handlers import Accounts, Intake
from shared.runtime.app import Service, ServiceContext

HOURLY = 3600.0


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the gateway's handlers, built once for its routes and its consumers."""
    accounts = ctx.provide(Accounts(ctx))
    ctx.provide(Intake(ctx, accounts))
    await accounts.setup()


async def shred_expired_intake_keys_hourly(ctx: ServiceContext) -> None:
    """Intake keys past their retention are shredded: the commands they sealed become unreadable."""
    while True:
        await ctx.component(Intake).shred_expired_keys()
        await asyncio.sleep(HOURLY)


service = Service(
    "gateway",
    public_routers=[router],
    subscribers=subscribers,
    on_start=setup,
    background=[shred_expired_intake_keys_hourly],
)
