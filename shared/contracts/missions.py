"""The public operations of the missions service (organisations and missions), as the gateway relays them,
with the models its routes read and answer."""

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared.contracts import MANAGERS, Input, Operation, roles
from shared.events.missions import MissionStatus
from shared.events.moderation import OrganizationRejectionReason
from shared.events.vocabulary import Domain, MissionContent, ModerationPolicy, OrganizationKind, SafetyConditions

Text = Annotated[str, StringConstraints(strip_whitespace=True)]
OrganizationStatus = Literal["pending", "approved", "rejected"]


# ---- requests ----


class PlaceInput(Input):
    """Where an on-site mission happens: the department and the coordinates follow from the postal code."""

    address: Annotated[Text, StringConstraints(max_length=300)] | None = None
    postal_code: str = Field(description="5 chiffres ; les codes CEDEX ne sont pas acceptés", examples=["56000"])
    commune: str | None = Field(default=None, description="parmi celles du code postal ; la plus peuplée sinon")


class MissionInput(Input):
    """A mission as its organisation writes it: drafted, then edited until it is submitted."""

    title: Annotated[Text, StringConstraints(min_length=3, max_length=120)]
    description: Annotated[Text, StringConstraints(min_length=10, max_length=5000)]
    domain: Domain
    remote: bool
    place: PlaceInput | None = Field(default=None, description="required on site")
    places: int = Field(ge=1, le=10_000)
    start_date: date | None = None
    end_date: date | None = None
    recurring: bool = False
    schedule: Annotated[Text, StringConstraints(max_length=300)] | None = None
    safety: SafetyConditions | None = Field(default=None, description="required on site")
    open_to_minors: bool = False
    prerequisites: list[Annotated[Text, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=3
    )


class CancelInput(Input):
    reason: Annotated[Text, StringConstraints(min_length=3, max_length=1000)]


class OrganizationMissionsQuery(BaseModel):
    status: MissionStatus | None = Field(default=None, description="only the missions in this status")


# ---- answers ----


class OrganizationView(BaseModel):
    """An organisation as its managers, the referents of its department and admins see it."""

    id: str
    name: str
    kind: OrganizationKind
    establishment_type: str | None = None
    siret: str | None = None
    rna: str | None = None
    postal_code: str
    department: str
    commune: str | None = None
    description: str | None = None
    manager_ids: list[str]
    registered_at: datetime | None = Field(default=None, description="unknown for a moment after registering")
    status: OrganizationStatus = Field(description="pending until a referent of its department decides")
    rejection: OrganizationRejectionReason | None = None


class MissionView(BaseModel):
    """A mission: its content as written, and where it stands."""

    id: str
    organization_id: str
    organization_name: str | None = Field(default=None, description="on a mission's own page")
    status: MissionStatus
    content: MissionContent
    title: str
    domain: Domain
    department: str
    remote: bool
    places: int
    end_date: date | None = None
    free_places: int | None = Field(default=None, description="once published")
    review_comment: str | None = Field(default=None, description="a referent's, on a refusal or a request for changes")
    status_reason: str | None = Field(default=None, description="why it was cancelled or taken offline")
    version: int = Field(description="how many events the mission went through")
    updated_at: datetime


class DraftedMission(BaseModel):
    mission_id: str
    status: Literal["draft"]


class DepartmentModeration(BaseModel):
    """`pre`: a referent validates a mission before it is published; `post`: published at once, reviewed after."""

    department: str
    policy: ModerationPolicy


MISSION_CHANGES = ("mission_not_found", "not_your_organization", "invalid_transition", "conflict")
MISSION_CONTENT = ("invalid_mission", "mission_dates_past", "invalid_postal_code", "unknown_postal_code")

OPERATIONS = [
    Operation(
        "GET",
        "/organizations/{organization_id}",
        "missions",
        "/missions/organizations/{organization_id}",
        roles("manager", "referent", "admin"),
        "The organisation, with its moderation status",
        response=OrganizationView,
        problems=("organization_not_found", "forbidden"),
    ),
    Operation(
        "GET",
        "/organizations/{organization_id}/missions",
        "missions",
        "/missions/organizations/{organization_id}/missions",
        MANAGERS,
        "The organisation's missions, newest first",
        response=list[MissionView],
        query=OrganizationMissionsQuery,
        problems=("organization_not_found", "not_your_organization"),
    ),
    Operation(
        "POST",
        "/organizations/{organization_id}/missions",
        "missions",
        "/missions/organizations/{organization_id}/missions",
        MANAGERS,
        "Draft a mission",
        response=DraftedMission,
        body=MissionInput,
        status=201,
        problems=("organization_not_found", "not_your_organization", *MISSION_CONTENT),
    ),
    Operation(
        "GET",
        "/missions/{mission_id}",
        "missions",
        "/missions/missions/{mission_id}",
        None,
        "A mission: public once published, otherwise its managers, referents and admins",
        response=MissionView,
        problems=("mission_not_found",),
    ),
    Operation(
        "PUT",
        "/missions/{mission_id}",
        "missions",
        "/missions/missions/{mission_id}",
        MANAGERS,
        "Edit a mission",
        response=None,
        body=MissionInput,
        status=204,
        problems=(*MISSION_CHANGES, *MISSION_CONTENT),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/submit",
        "missions",
        "/missions/missions/{mission_id}/submit",
        MANAGERS,
        "Submit a mission to moderation",
        response=None,
        status=204,
        problems=(*MISSION_CHANGES, "mission_dates_past"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/cancel",
        "missions",
        "/missions/missions/{mission_id}/cancel",
        MANAGERS,
        "Cancel a mission, with a reason",
        response=None,
        body=CancelInput,
        status=204,
        problems=MISSION_CHANGES,
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/close",
        "missions",
        "/missions/missions/{mission_id}/close",
        MANAGERS,
        "Close a mission",
        response=None,
        status=204,
        problems=MISSION_CHANGES,
    ),
    Operation(
        "GET",
        "/departments/{department}/moderation",
        "missions",
        "/missions/departments/{department}/moderation",
        None,
        "Which moderation the department's missions go through",
        response=DepartmentModeration,
    ),
]
