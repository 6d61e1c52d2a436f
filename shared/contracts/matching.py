"""The matching service's contracts: search, recommendations, invitations, territories; its public operations
as the gateway relays them."""

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared.contracts import MANAGERS, MODERATORS, Input, Operation, roles
from shared.events.vocabulary import Availability, Department, Domain, MissionMode

DEFAULT_RADIUS_KM = 35.0  # JeVeuxAider's search radius


class MissionSearch(BaseModel):
    """Where and what to look for; a postal code, or latitude and longitude together, place the search.

    Unknown parameters are ignored: a query string is shared with links and trackers."""

    domain: list[Domain] | None = None
    text: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=10)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    radius_km: float = Field(default=DEFAULT_RADIUS_KM, gt=0, le=200)
    remote: bool | None = Field(default=None, description="absent: both; true: remote only; false: on site only")
    start: date | None = None
    end: date | None = None
    page: int = Field(default=1, ge=1, le=1000)
    per_page: int = Field(default=20, ge=1, le=50)


class RecommendationLimit(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)


class MissionInvitation(Input):
    volunteer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


# ---- answers ----


class MissionMatch(BaseModel):
    """A published mission with free places; `distance_km` is null for a remote one or a search without a place."""

    id: str
    organization_id: str
    title: str
    domain: Domain
    remote: bool
    department: Department
    commune: str | None
    free_places: int
    start_date: date | None
    end_date: date | None
    distance_km: float | None
    latitude: float | None = Field(default=None, description="the commune's, for a map; null for a remote one")
    longitude: float | None = None


class MissionSearchPage(BaseModel):
    total: int
    page: int
    per_page: int
    missions: list[MissionMatch]


class RecommendedMission(MissionMatch):
    reason: str = Field(description="why it is proposed, as the volunteer reads it: « à 4 km, aide alimentaire »")


class SuggestedVolunteer(BaseModel):
    """What an organisation sees before inviting: no name, no contact."""

    volunteer_id: str
    department: Department
    distance_km: float | None
    domains: list[Domain]
    availability: list[Availability]
    mode: MissionMode


class MissionInvitationSent(BaseModel):
    mission_id: str
    volunteer_id: str
    invited_on: date


class DomainSupply(BaseModel):
    """Supply and demand of one domain in a department."""

    domain: Domain
    label: str
    volunteers: int = Field(description="volunteers without an accepted application")
    open_places: int
    volunteers_per_place: float | None = Field(description="null when no place is open")
    missions_without_candidates: int


ImbalanceKind = Literal["too_many_volunteers", "missions_without_candidates"]


class Imbalance(BaseModel):
    kind: ImbalanceKind
    domain: Domain
    summary: str


class TerritoryFigures(BaseModel):
    department: Department
    domains: list[DomainSupply]
    imbalances: list[Imbalance]


OPERATIONS = [
    Operation(
        "GET",
        "/search/missions",
        "matching",
        "/matching/missions",
        None,
        "Search published missions around a place",
        response=MissionSearchPage,
        query=MissionSearch,
        problems=("invalid_postal_code", "unknown_postal_code", "incomplete_coordinates", "invalid_dates"),
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/recommendations",
        "matching",
        "/matching/volunteers/{volunteer_id}/missions",
        roles("volunteer", "admin"),
        "Missions recommended to a volunteer",
        response=list[RecommendedMission],
        query=RecommendationLimit,
        problems=("not_your_profile", "volunteer_not_found"),
    ),
    Operation(
        "GET",
        "/missions/{mission_id}/suggested-volunteers",
        "matching",
        "/matching/missions/{mission_id}/volunteers",
        MANAGERS,
        "Volunteers suggested for a mission",
        response=list[SuggestedVolunteer],
        query=RecommendationLimit,
        problems=("role_not_allowed", "mission_not_found", "not_your_organization"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/invitations",
        "matching",
        "/matching/missions/{mission_id}/invitations",
        MANAGERS,
        "Invite a volunteer to apply",
        response=MissionInvitationSent,
        body=MissionInvitation,
        status=201,
        problems=(
            "role_not_allowed",
            "mission_not_found",
            "not_your_organization",
            "volunteer_not_found",
            "mission_full",
            "already_invited",
            "already_applied",
            "invitation_limit_reached",
            "volunteer_not_eligible",
        ),
    ),
    Operation(
        "GET",
        "/departments/{department}/territory",
        "matching",
        "/matching/territories/{department}",
        MODERATORS,
        "Supply and demand in the department",
        response=TerritoryFigures,
        problems=("role_not_allowed", "not_your_department"),
    ),
]
