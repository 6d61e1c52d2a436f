"""The consumer groups of the missions service and what each does with which event."""

from functools import partial

from services.missions import projections
from services.missions.domain import Decision
from services.missions.handlers import MissionsHandlers
from shared.events import (
    Envelope,
    Event,
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
from shared.runtime.consumers import EventHandler, Subscriber
from shared.runtime.ports import Projection

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


# what each group projects, replayed alone when its read models are rebuilt (ADR 0011)
READ_MODEL_PROJECTIONS: dict[type[Event], Projection] = {
    OrganizationRegistered: projections.on_organization_registered,
    **dict.fromkeys(MISSION_EVENTS, projections.on_mission_event),
}
MODERATION_PROJECTIONS: dict[type[Event], Projection] = {
    OrganizationApproved: projections.on_organization_decided,
    OrganizationRejected: projections.on_organization_decided,
    ModerationPolicyChanged: projections.on_policy_changed,
    ReferentAppointed: projections.on_referent_event,
    ReferentRevoked: projections.on_referent_event,
}
CAPACITY_PROJECTIONS: dict[type[Event], Projection] = dict.fromkeys(
    projections.APPLICATION_EVENTS, projections.on_application_event
)


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

    def projected(projecting: dict[type[Event], Projection]) -> dict[type[Event], EventHandler]:
        return {event: partial(projection, documents) for event, projection in projecting.items()}

    return [
        Subscriber(
            "missions.read_models",
            {
                **projected(READ_MODEL_PROJECTIONS),
                MissionSubmitted: on_mission_cleared,
                MissionModerated: on_mission_cleared,
            },
            read_models=(projections.ORGANIZATIONS, projections.MISSIONS),
            projections=READ_MODEL_PROJECTIONS,
        ),
        Subscriber(
            "missions.moderation",
            {
                **projected(MODERATION_PROJECTIONS),
                **dict.fromkeys(DECISIONS, on_mission_decision),
                OrganizationApproved: on_organization_decision,
                OrganizationRejected: on_organization_decision,
            },
            read_models=(projections.DECISIONS, projections.POLICIES, projections.REFERENTS),
            projections=MODERATION_PROJECTIONS,
        ),
        Subscriber(
            "missions.capacity",
            dict.fromkeys(projections.APPLICATION_EVENTS, on_application),
            read_models=(projections.PLACES,),
            projections=CAPACITY_PROJECTIONS,
        ),
    ]
