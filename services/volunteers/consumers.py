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
from shared.runtime.ports import Projection

MISSION_ENDS: dict[type[Event], MissionEnd] = {
    MissionCancelled: "cancelled",
    MissionClosed: "closed",
    MissionUnpublished: "unpublished",
}


# what each group projects, replayed alone when its read models are rebuilt (ADR 0011)
READ_MODEL_PROJECTIONS: dict[type[Event], Projection] = {
    **dict.fromkeys(projections.VOLUNTEER_EVENTS, projections.on_volunteer_event),
    **dict.fromkeys(projections.ROSTER_EVENTS, projections.on_roster_event),
}
MISSION_PROJECTIONS: dict[type[Event], Projection] = {
    **dict.fromkeys(projections.MISSION_EVENTS, projections.on_mission_event),
    OrganizationRegistered: projections.on_organization_registered,
}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    documents, handlers = ctx.documents, ctx.component(VolunteersHandlers)

    async def on_mission_event(event: Event, env: Envelope) -> None:
        await projections.on_mission_event(documents, event, env)
        if type(event) in MISSION_ENDS:
            assert isinstance(event, MissionEvent)
            await handlers.close_roster(event.mission_id, MISSION_ENDS[type(event)], env)

    return [
        Subscriber.projecting(
            "volunteers.read_models",
            documents,
            READ_MODEL_PROJECTIONS,
            read_models=(projections.VOLUNTEERS, projections.APPLICATIONS, projections.WAITLIST),
        ),
        Subscriber(
            "volunteers.missions",
            {
                **dict.fromkeys(projections.MISSION_EVENTS, on_mission_event),
                OrganizationRegistered: partial(projections.on_organization_registered, documents),
            },
            read_models=(projections.MISSIONS, projections.ORGANIZATIONS),
            projections=MISSION_PROJECTIONS,
        ),
    ]
