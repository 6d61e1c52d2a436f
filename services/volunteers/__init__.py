"""Volunteers service: sign-up, eligibility, applications, capacity, waitlist, GDPR export and erasure."""

from services.volunteers import projections
from services.volunteers.api import router
from services.volunteers.consumers import subscribers
from shared.runtime.app import Service

service = Service(
    "volunteers", routers=[router], subscribers=subscribers, on_start=lambda ctx: projections.setup(ctx.documents)
)
