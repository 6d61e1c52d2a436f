"""Moderation service: referents, per-department policy, the review queue, decisions, the territory; and the
referents' space, its pages (`pages`: /moderation…, /departements/{code}/territoire)."""

from services.moderation import pages, projections
from services.moderation.api import router
from services.moderation.consumers import subscribers
from services.moderation.handlers import ModerationHandlers
from shared.runtime.app import Service, ServiceContext


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the handlers, built once for the routes."""
    ctx.provide(ModerationHandlers(ctx))
    await projections.setup(ctx.documents)


service = Service(
    "moderation",
    routers=[router],
    public_routers=[pages.router],
    subscribers=subscribers,
    on_start=setup,
    install=pages.install,
)
