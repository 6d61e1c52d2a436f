"""Events of the volunteers service: volunteers and their applications (candidatures)."""

from typing import Literal

from pydantic import Field

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import (
    AgeBracket,
    Availability,
    Department,
    Domain,
    MissionMode,
    PostalCode,
    Sealed,
)

ApplicationRefusalReason = Literal[
    "no_response", "requirements_not_fulfilled", "change_mind", "mission_closed", "other"
]
WithdrawalReason = Literal["no_response", "requirements_not_fulfilled", "not_available", "other"]
CancellationReason = Literal["mission_cancelled", "mission_unpublished", "volunteer_erased"]


class VolunteerEvent(Event):
    topic = "volunteers.volunteer"
    volunteer_id: str

    def stream_id(self) -> str:
        return self.volunteer_id


@catalog.register
class VolunteerRegistered(VolunteerEvent):
    """Name, e-mail, phone, birth date and health declaration travel only inside `personal`."""

    personal: Sealed
    postal_code: PostalCode
    department: Department
    age_bracket: AgeBracket
    domains: list[Domain]
    availability: list[Availability]
    mode: MissionMode
    max_distance_km: int = Field(ge=0)
    onsite_restricted: bool
    visible_to_organizations: bool


@catalog.register
class VolunteerProfileUpdated(VolunteerEvent):
    """Only the fields that changed are set."""

    personal: Sealed | None = None
    postal_code: PostalCode | None = None
    department: Department | None = None
    age_bracket: AgeBracket | None = None
    domains: list[Domain] | None = None
    availability: list[Availability] | None = None
    mode: MissionMode | None = None
    max_distance_km: int | None = Field(default=None, ge=0)
    onsite_restricted: bool | None = None
    visible_to_organizations: bool | None = None


@catalog.register
class VolunteerErased(VolunteerEvent):
    """Anonymous facts kept for statistics; the key of every sealed field is gone."""

    department: Department
    age_bracket: AgeBracket


def roster_stream(mission_id: str) -> str:
    """One stream per mission for its applications and waitlist: capacity is checked on one version."""
    return f"roster-{mission_id}"


class RosterEvent(Event):
    topic = "volunteers.application"
    mission_id: str
    volunteer_id: str
    organization_id: str

    def stream_id(self) -> str:
        return roster_stream(self.mission_id)


class ApplicationEvent(RosterEvent):
    application_id: str


@catalog.register
class ApplicationReceived(ApplicationEvent):
    message: Sealed | None = None
    promoted_from_waitlist: bool = False


@catalog.register
class ApplicationAccepted(ApplicationEvent):
    pass


@catalog.register
class ApplicationRefused(ApplicationEvent):
    reason: ApplicationRefusalReason
    comment: str | None = None


@catalog.register
class ApplicationWithdrawn(ApplicationEvent):
    reason: WithdrawalReason
    comment: str | None = None


@catalog.register
class ApplicationCancelled(ApplicationEvent):
    reason: CancellationReason


@catalog.register
class VolunteerWaitlisted(RosterEvent):
    """The mission was full: the volunteer queues for the next free place."""


@catalog.register
class VolunteerLeftWaitlist(RosterEvent):
    reason: Literal["left", "mission_closed", "volunteer_erased"]
