"""The consumer groups of the moderation service."""

from functools import partial

from services.moderation import projections
from shared.events import (
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


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    docs = ctx.documents
    return [
        Subscriber(
            "moderation.queue",
            {
                MissionSubmitted: partial(projections.on_mission_submitted, docs),
                MissionCancelled: partial(projections.on_mission_withdrawn, docs),
                MissionValidated: partial(projections.on_mission_decided, docs),
                MissionRefused: partial(projections.on_mission_decided, docs),
                MissionChangesRequested: partial(projections.on_mission_decided, docs),
                OrganizationRegistered: partial(projections.on_organization_registered, docs),
                OrganizationApproved: partial(projections.on_organization_decided, docs),
                OrganizationRejected: partial(projections.on_organization_decided, docs),
                ReferentAppointed: partial(projections.on_referent_event, docs),
                ReferentRevoked: partial(projections.on_referent_event, docs),
                ModerationPolicyChanged: partial(projections.on_policy_changed, docs),
            },
        ),
        Subscriber(
            "moderation.territory",
            {
                **{cls: partial(projections.on_mission_event, docs) for cls in projections.MISSION_EVENTS},
                VolunteerRegistered: partial(projections.on_volunteer_event, docs),
                VolunteerProfileUpdated: partial(projections.on_volunteer_event, docs),
            },
        ),
    ]
