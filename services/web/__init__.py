"""The public website: volunteers find a mission, sign up, apply and follow their applications, in French, on
the State design system. A client of the gateway's public API (/api/v1) only: no event store, no read model
(ADR 0012)."""

from services.web.api import router
from services.web.visits import pages
from shared.runtime.app import Service
from shared.web.site import installer

service = Service("web", public_routers=[router], keeps_data=False, install=installer(pages))
