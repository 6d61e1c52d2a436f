"""The consumer group of the notifications service: every event that someone should hear about, and what
tells it who they are (contact details, managers, referents, missions, applications)."""

from services.notifications.handlers import Notifications
from shared.events import (
    AccountOpened,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    BroadcastPosted,
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentInvited,
    ReferentRevoked,
    TerritoryImbalanceDetected,
    VolunteerErased,
    VolunteerIdle,
    VolunteerInvited,
    VolunteerProfileUpdated,
    VolunteerRegistered,
)
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber

CONSUMED: tuple[type[Event], ...] = (
    AccountOpened,
    ReferentInvited,
    VolunteerRegistered,
    VolunteerProfileUpdated,
    VolunteerErased,
    ReferentAppointed,
    ReferentRevoked,
    OrganizationRegistered,
    OrganizationApproved,
    OrganizationRejected,
    MissionDrafted,
    MissionEdited,
    MissionSubmitted,
    MissionModerated,
    MissionPublished,
    MissionUnpublished,
    MissionFilled,
    MissionReopened,
    MissionClosed,
    MissionCancelled,
    ApplicationReceived,
    ApplicationAccepted,
    ApplicationRefused,
    ApplicationWithdrawn,
    ApplicationCancelled,
    VolunteerInvited,
    VolunteerIdle,
    TerritoryImbalanceDetected,
)


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    async def on_event(event: Event, env: Envelope) -> None:
        await Notifications(ctx).on_event(event, env)

    async def on_broadcast(event: BroadcastPosted, env: Envelope) -> None:
        await Notifications(ctx).fan_out(event, env)

    return [
        Subscriber("notifications.mail", dict.fromkeys(CONSUMED, on_event)),
        Subscriber("notifications.broadcasts", {BroadcastPosted: on_broadcast}),
    ]
