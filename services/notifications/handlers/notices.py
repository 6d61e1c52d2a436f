"""Who hears of what: one rule per event type, declaring the messages it writes (each with its category) and
saying who receives them. The message catalogue (`MESSAGES`) and the event types the service consumes derive
from this table: a new message is its letter in templates/ and one rule here (plus its letter's context in
`delivery`, when it reads more than its facts)."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from services.notifications import domain, projections
from services.notifications.domain import Category, Notice
from services.notifications.projections import MISSIONS
from shared.events import (
    AccountOpened,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionFilled,
    MissionModerated,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    PasswordResetRequested,
    ReferentInvited,
    TerritoryImbalanceDetected,
    VolunteerIdle,
    VolunteerInvited,
    VolunteerRegistered,
)
from shared.runtime.ports import DocumentStore

E = TypeVar("E", bound=Event)

# written by the scheduler (reminders, digests) and by referents' broadcasts, not told from one event
SCHEDULED: dict[str, Category] = {
    "pending_applications_reminder": "transactional",
    "referent_todo": "transactional",
    "mission_ended_check": "transactional",
    "mission_closing_soon": "transactional",
    "referent_broadcast": "news",
    "digest": "activity",
}


class OrganizationUnknown(Exception):
    """An event for an organisation's managers came before the organisation (another topic lags)."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(organization_id)
        self.organization_id = organization_id


@dataclass(frozen=True)
class Addressing:
    """What a rule reads besides its event (the envelope, the read models), and how it addresses its notices."""

    documents: DocumentStore
    env: Envelope
    messages: Mapping[str, Category]

    def to(self, template: str, recipients: list[str], **facts: Any) -> list[Notice]:
        if template not in self.messages:
            raise LookupError(f"a rule wrote {template!r}, which it does not declare")
        source, category = str(self.env.event_id), self.messages[template]
        return [Notice(template, recipient, source, facts, category=category) for recipient in recipients]

    async def managers(self, organization_id: str) -> list[str]:
        managers = await projections.managers_of(self.documents, organization_id)
        if not managers:
            raise OrganizationUnknown(organization_id)
        return managers

    async def referents(self, department: str) -> list[str]:
        return await projections.referents_of(self.documents, department)


NoticeRule = Callable[[E, Addressing], Awaitable[list[Notice]]]


@dataclass(frozen=True)
class Rule:
    messages: Mapping[str, Category]
    notices: NoticeRule[Any]


RULES: dict[type[Event], Rule] = {}
MESSAGES: dict[str, Category] = dict(SCHEDULED)  # every message and its category: the rules add theirs


def rule(event_type: type[E], **messages: Category) -> Callable[[NoticeRule[E]], NoticeRule[E]]:
    """Register the rule of `event_type`, which writes `messages` (template=category)."""

    def register(notices: NoticeRule[E]) -> NoticeRule[E]:
        if event_type in RULES:
            raise ValueError(f"{event_type.__name__} has a rule already")
        for template, category in messages.items():
            if MESSAGES.get(template, category) != category:
                raise ValueError(f"{template} is declared {MESSAGES[template]} elsewhere, not {category}")
        RULES[event_type] = Rule(messages, notices)
        MESSAGES.update(messages)
        return notices

    return register


def scheduled(template: str, recipient_id: str, source: str, facts: dict[str, Any]) -> Notice:
    """A notice of the scheduler or of a broadcast, in its category from `SCHEDULED`."""
    return Notice(template, recipient_id, source, facts, category=SCHEDULED[template])


async def notices_for(documents: DocumentStore, event: Event, env: Envelope) -> list[Notice]:
    """The e-mails an event calls for (none when no rule tells of it)."""
    found = RULES.get(type(event))
    if found is None:
        return []
    return await found.notices(event, Addressing(documents, env, found.messages))


# ---- accounts and referents ----


@rule(VolunteerRegistered, volunteer_welcome="transactional")
async def volunteer_welcome(event: VolunteerRegistered, address: Addressing) -> list[Notice]:
    return address.to("volunteer_welcome", [event.volunteer_id])


@rule(AccountOpened, manager_welcome="transactional")
async def manager_welcome(event: AccountOpened, address: Addressing) -> list[Notice]:
    return address.to("manager_welcome", [event.account_id]) if event.role == "manager" else []


@rule(PasswordResetRequested, password_reset="transactional")
async def password_reset(event: PasswordResetRequested, address: Addressing) -> list[Notice]:
    reset = event.reset.model_dump(mode="json")  # sealed: the delivery log never holds the link in clear
    return address.to("password_reset", [event.account_id], reset=reset, expires_at=event.expires_at.isoformat())


@rule(ReferentInvited, referent_invitation="transactional")
async def referent_invitation(event: ReferentInvited, address: Addressing) -> list[Notice]:
    invitee = projections.invitee_id(event.invitation_id)
    return address.to("referent_invitation", [invitee], departments=event.departments)


# ---- organisations ----


@rule(OrganizationRegistered, organization_submitted="activity")
async def organization_submitted(event: OrganizationRegistered, address: Addressing) -> list[Notice]:
    # it waits for the validation of its department's referents (DOMAIN.md), as a mission does
    referents = await address.referents(event.department)
    return address.to("organization_submitted", referents, organization_id=event.organization_id)


@rule(OrganizationApproved, organization_approved="transactional")
async def organization_approved(event: OrganizationApproved, address: Addressing) -> list[Notice]:
    managers = await address.managers(event.organization_id)
    return address.to("organization_approved", managers, organization_id=event.organization_id)


@rule(OrganizationRejected, organization_rejected="transactional")
async def organization_rejected(event: OrganizationRejected, address: Addressing) -> list[Notice]:
    managers = await address.managers(event.organization_id)
    return address.to(
        "organization_rejected",
        managers,
        organization_id=event.organization_id,
        reason=event.reason,
        comment=event.comment,
    )


# ---- missions ----


@rule(MissionSubmitted, mission_submitted="activity")
async def mission_submitted(event: MissionSubmitted, address: Addressing) -> list[Notice]:
    referents = await address.referents(event.content.department)
    return address.to("mission_submitted", referents, mission_id=event.mission_id)


@rule(
    MissionModerated,
    mission_validated="transactional",
    mission_refused="transactional",
    mission_changes_requested="transactional",
)
async def mission_moderated(event: MissionModerated, address: Addressing) -> list[Notice]:
    # taken offline by the decision: the MissionUnpublished that follows says it once
    mission = await address.documents.get(MISSIONS, event.mission_id) or {}
    if event.decision != "validated" and mission.get("online_at_decision", {}).get(str(address.env.stream_version)):
        return []
    managers = await address.managers(event.organization_id)
    return address.to(f"mission_{event.decision}", managers, mission_id=event.mission_id, comment=event.comment)


@rule(MissionUnpublished, mission_unpublished="transactional")
async def mission_unpublished(event: MissionUnpublished, address: Addressing) -> list[Notice]:
    managers = await address.managers(event.organization_id)
    return address.to("mission_unpublished", managers, mission_id=event.mission_id, reason=event.reason)


@rule(MissionFilled, mission_full="activity")
async def mission_full(event: MissionFilled, address: Addressing) -> list[Notice]:
    return address.to("mission_full", await address.managers(event.organization_id), mission_id=event.mission_id)


# ---- applications ----


@rule(
    ApplicationReceived,
    application_received="activity",
    application_confirmed="transactional",
    waitlist_promoted="transactional",
)
async def application_received(event: ApplicationReceived, address: Addressing) -> list[Notice]:
    managers = await address.managers(event.organization_id)
    confirmation = "waitlist_promoted" if event.promoted_from_waitlist else "application_confirmed"
    return [
        *address.to("application_received", managers, mission_id=event.mission_id),
        *address.to(confirmation, [event.volunteer_id], mission_id=event.mission_id),
    ]


@rule(ApplicationAccepted, application_accepted="transactional", mission_almost_full="activity")
async def application_accepted(event: ApplicationAccepted, address: Addressing) -> list[Notice]:
    notices = address.to(
        "application_accepted", [event.volunteer_id], mission_id=event.mission_id, organization_id=event.organization_id
    )
    mission = await address.documents.get(MISSIONS, event.mission_id)
    if mission and "places" in mission:
        free = mission["places"] - await projections.accepted_count(address.documents, event.mission_id)
        if domain.is_almost_full(mission["places"], free):
            managers = await address.managers(event.organization_id)
            notices += address.to("mission_almost_full", managers, mission_id=event.mission_id)
    return notices


@rule(ApplicationRefused, application_refused="transactional")
async def application_refused(event: ApplicationRefused, address: Addressing) -> list[Notice]:
    return address.to(
        "application_refused",
        [event.volunteer_id],
        mission_id=event.mission_id,
        reason=event.reason,
        comment=event.comment,
    )


@rule(ApplicationCancelled, application_cancelled="transactional")
async def application_cancelled(event: ApplicationCancelled, address: Addressing) -> list[Notice]:
    if event.reason == "volunteer_erased":
        return []
    return address.to("application_cancelled", [event.volunteer_id], mission_id=event.mission_id, reason=event.reason)


@rule(ApplicationWithdrawn, application_withdrawn="activity")
async def application_withdrawn(event: ApplicationWithdrawn, address: Addressing) -> list[Notice]:
    managers = await address.managers(event.organization_id)
    return address.to("application_withdrawn", managers, mission_id=event.mission_id, reason=event.reason)


# ---- matching ----


@rule(VolunteerInvited, mission_invitation="news")
async def mission_invitation(event: VolunteerInvited, address: Addressing) -> list[Notice]:
    return address.to(
        "mission_invitation", [event.volunteer_id], mission_id=event.mission_id, organization_id=event.organization_id
    )


@rule(VolunteerIdle, idle_digest="news")
async def idle_digest(event: VolunteerIdle, address: Addressing) -> list[Notice]:
    return address.to("idle_digest", [event.volunteer_id], mission_ids=event.nearby_mission_ids)


@rule(TerritoryImbalanceDetected, territory_imbalance="activity")
async def territory_imbalance(event: TerritoryImbalanceDetected, address: Addressing) -> list[Notice]:
    referents = await address.referents(event.department)
    return address.to(
        "territory_imbalance",
        referents,
        department=event.department,
        domain=event.domain,
        kind=event.kind,
        summary=event.summary,
    )
