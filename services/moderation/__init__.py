"""Moderation service: referents, per-department policy, the review queue, decisions, the territory."""

from services.moderation import projections
from services.moderation.api import router
from services.moderation.consumers import subscribers
from shared.runtime.app import Service

service = Service(
    "moderation", routers=[router], subscribers=subscribers, on_start=lambda ctx: projections.setup(ctx.documents)
)
