"""The event catalog: the published language between services and for analytics consumers."""

from shared.events.catalog import Catalog, Event, UnknownEventType, catalog
from shared.events.envelope import SYSTEM, Actor, Envelope, Role
from shared.events.gateway import *  # noqa: F403
from shared.events.ids import new_id, uuid7
from shared.events.matching import *  # noqa: F403
from shared.events.missions import *  # noqa: F403
from shared.events.moderation import *  # noqa: F403
from shared.events.notifications import *  # noqa: F403
from shared.events.volunteers import *  # noqa: F403

__all__ = [
    "SYSTEM",
    "Actor",
    "Catalog",
    "Envelope",
    "Event",
    "Role",
    "UnknownEventType",
    "catalog",
    "new_id",
    "uuid7",
    *(cls.event_type() for cls in catalog),
]
