"""python -m services: the whole platform in one process (embedded backend by default)."""

from services.gateway import service as gateway
from services.matching import service as matching
from services.missions import service as missions
from services.moderation import service as moderation
from services.notifications import service as notifications
from services.volunteers import service as volunteers
from services.web import service as web
from shared.runtime.app import serve

SERVICES = [gateway, missions, moderation, volunteers, matching, notifications, web]  # the site's pages last

if __name__ == "__main__":
    serve(SERVICES, title="Civique", prog="python -m services")
