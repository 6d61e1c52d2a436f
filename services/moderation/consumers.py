"""The consumer groups of the moderation service."""

from services.moderation import projections
from shared.events import (
    Event,
    MissionCancelled,
    MissionChangesRequested,
    MissionRefused,
    MissionSubmitted,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
    VolunteerProfileUpdated,
    VolunteerRegistered,
)
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber
from shared.runtime.ports import Projection

QUEUE_PROJECTIONS: dict[type[Event], Projection] = {
    MissionSubmitted: projections.on_mission_submitted,
    MissionCancelled: projections.on_mission_withdrawn,
    MissionValidated: projections.on_mission_decided,
    MissionRefused: projections.on_mission_decided,
    MissionChangesRequested: projections.on_mission_decided,
    OrganizationRegistered: projections.on_organization_registered,
    OrganizationApproved: projections.on_organization_decided,
    OrganizationRejected: projections.on_organization_decided,
    ReferentAppointed: projections.on_referent_event,
    ReferentRevoked: projections.on_referent_event,
    ModerationPolicyChanged: projections.on_policy_changed,
}
TERRITORY_PROJECTIONS: dict[type[Event], Projection] = {
    **dict.fromkeys(projections.MISSION_EVENTS, projections.on_mission_event),
    VolunteerRegistered: projections.on_volunteer_event,
    VolunteerProfileUpdated: projections.on_volunteer_event,
}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    """Both groups only project: each can be replayed (ADR 0011)."""
    return [
        Subscriber.projecting(
            "moderation.queue",
            ctx.documents,
            QUEUE_PROJECTIONS,
            read_models=(projections.QUEUE, projections.ORGANIZATIONS, projections.REFERENTS, projections.POLICIES),
        ),
        Subscriber.projecting(
            "moderation.territory",
            ctx.documents,
            TERRITORY_PROJECTIONS,
            read_models=(projections.MISSIONS, projections.VOLUNTEERS),
        ),
    ]
