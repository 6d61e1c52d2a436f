"""The consumer groups of the missions service and what each does with which event."""

from functools import partial

from services.missions import projections
from services.missions.domain import Decision
from services.missions.handlers import MissionsHandlers
from shared.events import (
    Envelope,
    MissionCancelled,
    MissionChangesRequested,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionRefused,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
)
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber

MISSION_EVENTS = (
    MissionDrafted,
    MissionEdited,
    MissionSubmitted,
    MissionModerated,
    MissionPublished,
    MissionUnpublished,
    MissionFilled,
    MissionReopened,
    MissionPlacesChanged,
    MissionClosed,
    MissionCancelled,
)
DECISIONS: dict[type[MissionValidated | MissionRefused | MissionChangesRequested], Decision] = {
    MissionValidated: "validated",
    MissionRefused: "refused",
    MissionChangesRequested: "changes_requested",
}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    documents, handlers = ctx.documents, ctx.component(MissionsHandlers)

    async def on_mission_decision(
        event: MissionValidated | MissionRefused | MissionChangesRequested, env: Envelope
    ) -> None:
        await handlers.apply_decision(
            event.mission_id, DECISIONS[type(event)], getattr(event, "reason", None), event.comment, env
        )

    async def on_organization_decision(event: OrganizationApproved | OrganizationRejected, env: Envelope) -> None:
        await projections.on_organization_decided(documents, event, env)
        if isinstance(event, OrganizationApproved):
            await handlers.publish_missions_of(event.organization_id, env)

    async def on_mission_cleared(event: MissionSubmitted | MissionModerated, env: Envelope) -> None:
        await projections.on_mission_event(documents, event, env)
        await handlers.publish_if_approved(event.mission_id, env)

    async def on_application(event: projections.ApplicationEvent, env: Envelope) -> None:
        await projections.on_application_event(documents, event, env)
        await handlers.update_capacity(event.mission_id, env)

    return [
        Subscriber(
            "missions.read_models",
            {
                OrganizationRegistered: partial(projections.on_organization_registered, documents),
                **{cls: partial(projections.on_mission_event, documents) for cls in MISSION_EVENTS},
                MissionSubmitted: on_mission_cleared,
                MissionModerated: on_mission_cleared,
            },
        ),
        Subscriber(
            "missions.moderation",
            {
                **dict.fromkeys(DECISIONS, on_mission_decision),
                OrganizationApproved: on_organization_decision,
                OrganizationRejected: on_organization_decision,
                ModerationPolicyChanged: partial(projections.on_policy_changed, documents),
                ReferentAppointed: partial(projections.on_referent_event, documents),
                ReferentRevoked: partial(projections.on_referent_event, documents),
            },
        ),
        Subscriber("missions.capacity", dict.fromkeys(projections.APPLICATION_EVENTS, on_application)),
    ]
