"""The consumer groups of the volunteers service."""

from functools import partial

from services.volunteers import projections
from services.volunteers.domain import MissionEnd
from services.volunteers.handlers import VolunteersHandlers
from shared.events import (
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionUnpublished,
    OrganizationRegistered,
)
from shared.events.missions import MissionEvent
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber

MISSION_ENDS: dict[type[Event], MissionEnd] = {
    MissionCancelled: "cancelled",
    MissionClosed: "closed",
    MissionUnpublished: "unpublished",
}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    documents, handlers = ctx.documents, ctx.component(VolunteersHandlers)

    async def on_mission_event(event: Event, env: Envelope) -> None:
        await projections.on_mission_event(documents, event, env)
        if type(event) in MISSION_ENDS:
            assert isinstance(event, MissionEvent)
            await handlers.close_roster(event.mission_id, MISSION_ENDS[type(event)], env)

    return [
        Subscriber(
            "volunteers.read_models",
            {
                **{cls: partial(projections.on_volunteer_event, documents) for cls in projections.VOLUNTEER_EVENTS},
                **{cls: partial(projections.on_roster_event, documents) for cls in projections.ROSTER_EVENTS},
            },
        ),
        Subscriber(
            "volunteers.missions",
            {
                **dict.fromkeys(projections.MISSION_EVENTS, on_mission_event),
                OrganizationRegistered: partial(projections.on_organization_registered, documents),
            },
        ),
    ]
