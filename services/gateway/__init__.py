"""Gateway: accounts and roles, the public API (/api/v1), rate limits, idempotency keys."""

from services.gateway.api import router
from services.gateway.consumers import subscribers
from services.gateway.handlers import Accounts
from shared.runtime.app import Service, ServiceContext


async def setup(ctx: ServiceContext) -> None:
    await Accounts(ctx).setup()


service = Service("gateway", routers=[router], subscribers=subscribers, on_start=setup)
