"""Events of the matching service: invitations to missions, idle volunteers, territory imbalances."""

from datetime import date
from typing import Literal

from pydantic import Field

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Department, Domain


def outreach_stream(volunteer_id: str) -> str:
    """One stream per volunteer for what matching sent them: the invitation caps are checked on one version."""
    return f"outreach-{volunteer_id}"


class OutreachEvent(Event):
    topic = "matching.outreach"
    volunteer_id: str

    def stream_id(self) -> str:
        return outreach_stream(self.volunteer_id)


@catalog.register
class VolunteerInvited(OutreachEvent):
    """An organisation asked a volunteer to help on a mission (at most once per mission, twice a month)."""

    mission_id: str
    organization_id: str
    invited_by: str
    invited_on: date


@catalog.register
class VolunteerIdle(OutreachEvent):
    """No accepted application long after sign-up: the digest lists open missions near them."""

    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    department: Department
    days_since_sign_up: int = Field(ge=0)
    nearby_mission_ids: list[str]


def territory_stream(department: str) -> str:
    return f"territory-{department}"


class TerritoryEvent(Event):
    topic = "matching.territory"
    department: Department

    def stream_id(self) -> str:
        return territory_stream(self.department)


ImbalanceKind = Literal["too_many_volunteers", "missions_without_candidates"]


@catalog.register
class TerritoryImbalanceDetected(TerritoryEvent):
    """Supply and demand of a domain crossed a threshold in the department: for its referents."""

    kind: ImbalanceKind
    domain: Domain
    volunteers: int = Field(ge=0)
    open_places: int = Field(ge=0)
    missions_without_candidates: int = Field(ge=0)
    summary: str


@catalog.register
class TerritoryImbalanceCleared(TerritoryEvent):
    kind: ImbalanceKind
    domain: Domain
