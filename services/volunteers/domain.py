"""Volunteers and their applications: state from events, commands that check rules and return events.

A mission's applications and waitlist form one aggregate, its *roster* (one stream per mission):
every acceptance is decided on the roster's version, so a mission never gets more accepted
volunteers than places, whatever the concurrency.
"""

from dataclasses import dataclass, field, replace
from typing import Literal

from shared.contracts.volunteers import ApplicationStatus
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import (
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Event,
    VolunteerErased,
    VolunteerLeftWaitlist,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    VolunteerWaitlisted,
)
from shared.events.vocabulary import AgeBracket, Sealed
from shared.events.volunteers import ApplicationRefusalReason, CancellationReason, WithdrawalReason

CRISIS_AGE = 70
LIVE: tuple[ApplicationStatus, ...] = ("pending", "accepted")
MissionEnd = Literal["cancelled", "closed", "unpublished"]
BRACKETS: tuple[tuple[int, AgeBracket], ...] = (
    (17, "16-17"),
    (24, "18-24"),
    (34, "25-34"),
    (49, "35-49"),
    (64, "50-64"),
    (69, "65-69"),
)

MINORS_NOT_ACCEPTED = Forbidden("minors_not_accepted", "Cette mission n’est pas ouverte aux moins de 18 ans.")
ONSITE_NOT_ALLOWED_IN_CRISIS = Forbidden(
    "onsite_not_allowed_in_crisis",
    "Pendant la crise, les personnes de 70 ans et plus ou à risque participent aux missions à distance.",
)
APPLICATION_NOT_FOUND = NotFound("application_not_found", "Cette candidature est introuvable.")
MISSION_FULL = Conflict(
    "mission_full", "Cette mission est complète : toutes ses places sont prises (sa liste d’attente reste ouverte)."
)
MISSION_NOT_OPEN = Conflict("mission_not_open", "Cette mission n’accepte pas de candidatures.")
ALREADY_APPLIED = Conflict("already_applied", "Vous êtes déjà candidat à cette mission ou sur sa liste d’attente.")
TOO_MANY_APPLICATIONS = Conflict(
    "too_many_applications",
    "Vous avez déjà le nombre maximal de candidatures en attente : attendez une réponse ou retirez-en une.",
)
APPLICATION_NOT_PENDING = Conflict("application_not_pending", "Cette candidature n’est plus en attente.")
APPLICATION_CLOSED = Conflict("application_closed", "Cette candidature est déjà close.")
PLACES_LEFT = Conflict("places_left", "Il reste des places : candidatez directement.")
NOT_ON_WAITLIST = NotFound("not_on_waitlist", "Vous n’êtes pas sur la liste d’attente.")
VOLUNTEER_NOT_FOUND = NotFound("volunteer_not_found", "Ce profil de bénévole est introuvable.")


def age_bracket(age: int) -> AgeBracket:
    for upper, bracket in BRACKETS:
        if age <= upper:
            return bracket
    return "70+"


# ---- eligibility ----


@dataclass(frozen=True)
class Candidate:
    """What eligibility needs to know of a volunteer (decrypted by the handler)."""

    id: str
    age: int
    health_risk: bool


@dataclass(frozen=True)
class OpenMission:
    """What the volunteers service knows of a mission, from the missions service's events."""

    id: str
    organization_id: str
    status: str
    places: int
    remote: bool
    open_to_minors: bool


def ineligibility(candidate: Candidate, mission: OpenMission, crisis_mode: bool) -> Forbidden | None:
    """Why the candidate may not take part in the mission, or None."""
    if candidate.age < 18 and not mission.open_to_minors:
        return MINORS_NOT_ACCEPTED()
    if crisis_mode and not mission.remote and (candidate.age >= CRISIS_AGE or candidate.health_risk):
        return ONSITE_NOT_ALLOWED_IN_CRISIS()
    return None


# ---- the roster ----


@dataclass(frozen=True)
class Application:
    id: str
    volunteer_id: str
    status: ApplicationStatus


@dataclass(frozen=True)
class Roster:
    mission_id: str
    applications: dict[str, Application] = field(default_factory=dict)
    waitlist: tuple[str, ...] = ()

    @classmethod
    def replay(cls, mission_id: str, events: list[Event]) -> "Roster":
        roster = cls(mission_id)
        for event in events:
            roster = roster.apply(event)
        return roster

    def apply(self, event: Event) -> "Roster":
        match event:
            case ApplicationReceived():
                applications = {
                    **self.applications,
                    event.application_id: Application(event.application_id, event.volunteer_id, "pending"),
                }
                waitlist = tuple(v for v in self.waitlist if v != event.volunteer_id)
                return replace(self, applications=applications, waitlist=waitlist)
            case ApplicationAccepted() | ApplicationRefused() | ApplicationWithdrawn() | ApplicationCancelled():
                status = STATUS_AFTER[type(event)]
                current = self.applications[event.application_id]
                return replace(
                    self, applications={**self.applications, event.application_id: replace(current, status=status)}
                )
            case VolunteerWaitlisted():
                return replace(self, waitlist=(*self.waitlist, event.volunteer_id))
            case VolunteerLeftWaitlist():
                return replace(self, waitlist=tuple(v for v in self.waitlist if v != event.volunteer_id))
        return self

    @property
    def accepted(self) -> int:
        return sum(a.status == "accepted" for a in self.applications.values())

    def live_application_of(self, volunteer_id: str) -> Application | None:
        return next(
            (a for a in self.applications.values() if a.volunteer_id == volunteer_id and a.status in LIVE), None
        )

    def application(self, application_id: str) -> Application:
        try:
            return self.applications[application_id]
        except KeyError:
            raise APPLICATION_NOT_FOUND() from None


STATUS_AFTER: dict[type[Event], ApplicationStatus] = {
    ApplicationAccepted: "accepted",
    ApplicationRefused: "refused",
    ApplicationWithdrawn: "withdrawn",
    ApplicationCancelled: "cancelled",
}


def free_places(roster: Roster, mission: OpenMission) -> int:
    return max(0, mission.places - roster.accepted)


def require_open(mission: OpenMission) -> None:
    if mission.status not in ("published", "filled"):
        raise MISSION_NOT_OPEN()


def apply_to(
    roster: Roster,
    mission: OpenMission,
    candidate: Candidate,
    application_id: str,
    message: Sealed | None,
    pending_elsewhere: int,
    max_pending: int,
    crisis_mode: bool,
) -> list[Event]:
    known = roster.applications.get(application_id)
    if known is not None and known.volunteer_id == candidate.id:
        return []  # the same request carried out again (redelivered): it applies once
    require_open(mission)
    if roster.live_application_of(candidate.id):
        raise ALREADY_APPLIED()
    if refusal := ineligibility(candidate, mission, crisis_mode):
        raise refusal
    if free_places(roster, mission) == 0:
        raise MISSION_FULL()
    if pending_elsewhere >= max_pending:
        raise TOO_MANY_APPLICATIONS()
    return [
        ApplicationReceived(
            application_id=application_id,
            mission_id=mission.id,
            volunteer_id=candidate.id,
            organization_id=mission.organization_id,
            message=message,
        )
    ]


def accept(roster: Roster, mission: OpenMission, application_id: str) -> list[Event]:
    application = roster.application(application_id)
    if application.status != "pending":
        raise APPLICATION_NOT_PENDING()
    if free_places(roster, mission) == 0:
        raise MISSION_FULL()
    return [
        ApplicationAccepted(
            application_id=application_id,
            mission_id=mission.id,
            volunteer_id=application.volunteer_id,
            organization_id=mission.organization_id,
        )
    ]


def refuse(
    roster: Roster, mission: OpenMission, application_id: str, reason: ApplicationRefusalReason, comment: str | None
) -> list[Event]:
    application = roster.application(application_id)
    if application.status not in LIVE:
        raise APPLICATION_CLOSED()
    return [
        ApplicationRefused(
            application_id=application_id,
            mission_id=mission.id,
            volunteer_id=application.volunteer_id,
            organization_id=mission.organization_id,
            reason=reason,
            comment=comment,
        )
    ]


def withdraw(
    roster: Roster,
    mission: OpenMission,
    application_id: str,
    volunteer_id: str,
    reason: WithdrawalReason,
    comment: str | None,
) -> list[Event]:
    application = roster.application(application_id)
    if application.volunteer_id != volunteer_id:
        raise APPLICATION_NOT_FOUND()
    if application.status not in LIVE:
        raise APPLICATION_CLOSED()
    return [
        ApplicationWithdrawn(
            application_id=application_id,
            mission_id=mission.id,
            volunteer_id=volunteer_id,
            organization_id=mission.organization_id,
            reason=reason,
            comment=comment,
        )
    ]


def join_waitlist(roster: Roster, mission: OpenMission, candidate: Candidate, crisis_mode: bool) -> list[Event]:
    require_open(mission)
    if roster.live_application_of(candidate.id) or candidate.id in roster.waitlist:
        raise ALREADY_APPLIED()
    if refusal := ineligibility(candidate, mission, crisis_mode):
        raise refusal
    if free_places(roster, mission) > 0:
        raise PLACES_LEFT()
    return [
        VolunteerWaitlisted(mission_id=mission.id, volunteer_id=candidate.id, organization_id=mission.organization_id)
    ]


def leave_waitlist(roster: Roster, mission: OpenMission, volunteer_id: str) -> list[Event]:
    if volunteer_id not in roster.waitlist:
        raise NOT_ON_WAITLIST()
    return [
        VolunteerLeftWaitlist(
            mission_id=mission.id, volunteer_id=volunteer_id, organization_id=mission.organization_id, reason="left"
        )
    ]


def promote(
    roster: Roster, mission: OpenMission, candidates: dict[str, Candidate], crisis_mode: bool, new_id: str
) -> list[Event]:
    """A place is free: the first eligible volunteer of the waitlist gets a pending application."""
    if mission.status not in ("published", "filled") or free_places(roster, mission) == 0:
        return []
    for volunteer_id in roster.waitlist:
        candidate = candidates.get(volunteer_id)
        if candidate and ineligibility(candidate, mission, crisis_mode) is None:
            return [
                ApplicationReceived(
                    application_id=new_id,
                    mission_id=mission.id,
                    volunteer_id=volunteer_id,
                    organization_id=mission.organization_id,
                    promoted_from_waitlist=True,
                )
            ]
    return []


def close_roster(roster: Roster, mission: OpenMission, why: MissionEnd) -> list[Event]:
    """The mission ended: pending applications cancelled (or refused when it closed), the waitlist emptied."""
    events: list[Event] = []
    common = {"mission_id": mission.id, "organization_id": mission.organization_id}
    for application in roster.applications.values():
        if application.status != "pending":
            continue
        ids = {"application_id": application.id, "volunteer_id": application.volunteer_id}
        if why == "closed":
            events.append(ApplicationRefused(**common, **ids, reason="mission_closed"))
        else:
            reason: CancellationReason = "mission_cancelled" if why == "cancelled" else "mission_unpublished"
            events.append(ApplicationCancelled(**common, **ids, reason=reason))
    events += [VolunteerLeftWaitlist(**common, volunteer_id=v, reason="mission_closed") for v in roster.waitlist]
    return events


def erase_from(roster: Roster, mission: OpenMission, volunteer_id: str) -> list[Event]:
    """An erased volunteer's live application is cancelled and they leave the waitlist."""
    common = {"mission_id": mission.id, "organization_id": mission.organization_id, "volunteer_id": volunteer_id}
    events: list[Event] = []
    if application := roster.live_application_of(volunteer_id):
        events.append(ApplicationCancelled(**common, application_id=application.id, reason="volunteer_erased"))
    if volunteer_id in roster.waitlist:
        events.append(VolunteerLeftWaitlist(**common, reason="volunteer_erased"))
    return events


# ---- the volunteer ----


@dataclass(frozen=True)
class Volunteer:
    id: str
    registered: bool = False
    erased: bool = False
    personal: Sealed | None = None
    department: str = ""
    age_bracket: AgeBracket = "18-24"

    @classmethod
    def replay(cls, volunteer_id: str, events: list[Event]) -> "Volunteer":
        volunteer = cls(volunteer_id)
        for event in events:
            match event:
                case VolunteerRegistered():
                    volunteer = replace(
                        volunteer,
                        registered=True,
                        personal=event.personal,
                        department=event.department,
                        age_bracket=event.age_bracket,
                    )
                case VolunteerProfileUpdated():
                    volunteer = replace(
                        volunteer,
                        personal=event.personal or volunteer.personal,
                        department=event.department or volunteer.department,
                        age_bracket=event.age_bracket or volunteer.age_bracket,
                    )
                case VolunteerErased():
                    volunteer = replace(volunteer, erased=True)
        return volunteer

    def require_active(self) -> None:
        if not self.registered or self.erased:
            raise VOLUNTEER_NOT_FOUND()


def erase_volunteer(volunteer: Volunteer) -> list[Event]:
    volunteer.require_active()
    return [
        VolunteerErased(volunteer_id=volunteer.id, department=volunteer.department, age_bracket=volunteer.age_bracket)
    ]
