"""Volunteers service: sign-up, eligibility, applications, capacity, waitlist, GDPR export and erasure."""

from services.volunteers import projections
from services.volunteers.api import router
from services.volunteers.consumers import subscribers
from services.volunteers.handlers import VolunteersHandlers
from shared.runtime.app import Service, ServiceContext


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the handlers, built once for the routes and the consumers; the indexes."""
    ctx.provide(VolunteersHandlers(ctx))
    await projections.setup(ctx.documents)


service = Service("volunteers", routers=[router], subscribers=subscribers, on_start=setup)
