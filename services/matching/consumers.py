"""The consumer group of the matching service: its read models, which the in-memory index follows."""

from services.matching import projections
from shared.events import Event, OrganizationRegistered, ReferentAppointed, ReferentRevoked
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber
from shared.runtime.ports import Projection

PROJECTIONS: dict[type[Event], Projection] = {
    **dict.fromkeys(projections.MISSION_EVENTS, projections.on_mission_event),
    **dict.fromkeys(projections.VOLUNTEER_EVENTS, projections.on_volunteer_event),
    **dict.fromkeys(projections.APPLICATION_STATUS, projections.on_application_event),
    OrganizationRegistered: projections.on_organization_registered,
    ReferentAppointed: projections.on_referent_event,
    ReferentRevoked: projections.on_referent_event,
}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    """One group that only projects: it can be replayed (ADR 0011)."""
    return [
        Subscriber.projecting(
            "matching.read_models",
            ctx.documents,
            PROJECTIONS,
            read_models=(
                projections.MISSIONS,
                projections.VOLUNTEERS,
                projections.APPLICATIONS,
                projections.ORGANIZATIONS,
                projections.REFERENTS,
            ),
        )
    ]
