"""The public operations of the moderation service, as the gateway relays them: referents, policies,
queues, decisions, dashboards; with the models its routes read and answer."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared.contracts import ADMINS, ANY_ROLE, MODERATORS, Input, Operation
from shared.contracts.missions import OrganizationStatus
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason
from shared.events.vocabulary import Department, Domain, ModerationPolicy

MissionDecision = Literal["validate", "refuse", "request_changes"]
OrganizationDecision = Literal["approve", "reject"]
DuplicateReason = Literal["siret", "rna", "name"]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


# ---- requests ----


class Appointment(Input):
    departments: list[Department] = Field(min_length=1, max_length=20)


class PolicyInput(Input):
    policy: ModerationPolicy


class MissionDecisionInput(Input):
    """`refuse` needs a `reason`, `request_changes` a `comment`."""

    decision: MissionDecision
    reason: MissionRefusalReason | None = None
    comment: Comment | None = None


class OrganizationDecisionInput(Input):
    """`reject` needs a `reason`."""

    decision: OrganizationDecision
    reason: OrganizationRejectionReason | None = None
    comment: Comment | None = None


# ---- answers ----


class ReferentView(BaseModel):
    id: str
    departments: list[str]


class DepartmentPolicy(BaseModel):
    department: str
    policy: ModerationPolicy


class PossibleDuplicate(BaseModel):
    """An organisation that may be the same one registered again, and what they share."""

    id: str
    name: str | None = None
    department: str | None = None
    status: OrganizationStatus
    matched_on: list[DuplicateReason]


class QueueEntry(BaseModel):
    """A mission or an organisation awaiting a referent's decision, oldest first."""

    id: str
    kind: Literal["mission", "organization"]
    title: str
    domain: Domain | None = Field(default=None, description="a mission's")
    submitted_at: datetime
    age_hours: float
    possible_duplicates: list[PossibleDuplicate] | None = Field(default=None, description="an organisation's")


class Places(BaseModel):
    offered: int
    filled: int
    free: int


class PendingModeration(BaseModel):
    missions: int
    oldest_age_hours: float | None = None


class Dashboard(BaseModel):
    """The figures of a department, or national ones (`department` null)."""

    department: str | None
    missions_by_status: dict[str, int]
    online_missions_by_domain: dict[Domain, int]
    places: Places = Field(description="of the missions online")
    pending_moderation: PendingModeration
    organizations_pending: int
    volunteers: int
    open_missions: int = Field(description="online with a free place")
    volunteers_per_open_mission: float | None = None


DEPARTMENT_SCOPE = ("unknown_department", "not_your_department")

OPERATIONS = [
    Operation(
        "PUT",
        "/referents/{referent_id}",
        "moderation",
        "/moderation/referents/{referent_id}",
        ADMINS,
        "Appoint a referent to departments",
        response=None,
        body=Appointment,
        status=204,
        problems=("conflict",),
    ),
    Operation(
        "DELETE",
        "/referents/{referent_id}",
        "moderation",
        "/moderation/referents/{referent_id}",
        ADMINS,
        "Revoke a referent",
        response=None,
        status=204,
        problems=("referent_not_found", "conflict"),
    ),
    Operation(
        "GET",
        "/referents/{referent_id}",
        "moderation",
        "/moderation/referents/{referent_id}",
        MODERATORS,
        "A referent and their departments",
        response=ReferentView,
        problems=("forbidden", "referent_not_found"),
    ),
    Operation(
        "PUT",
        "/departments/{department}/policy",
        "moderation",
        "/moderation/departments/{department}/policy",
        ADMINS,
        "Set the department's moderation policy",
        response=None,
        body=PolicyInput,
        status=204,
        problems=("unknown_department", "conflict"),
    ),
    Operation(
        "GET",
        "/departments/{department}/policy",
        "moderation",
        "/moderation/departments/{department}/policy",
        ANY_ROLE,
        "The department's moderation policy",
        response=DepartmentPolicy,
        problems=("unknown_department",),
    ),
    Operation(
        "GET",
        "/departments/{department}/queue",
        "moderation",
        "/moderation/departments/{department}/queue",
        MODERATORS,
        "What awaits the department's referents",
        response=list[QueueEntry],
        problems=DEPARTMENT_SCOPE,
    ),
    Operation(
        "POST",
        "/moderation/missions/{mission_id}/decision",
        "moderation",
        "/moderation/missions/{mission_id}/decision",
        MODERATORS,
        "Validate, refuse or send back a mission",
        response=None,
        body=MissionDecisionInput,
        status=204,
        problems=(
            "mission_not_awaiting_review",
            "not_your_department",
            "already_decided",
            "unsafe_mission",
            "reason_required",
            "comment_required",
        ),
    ),
    Operation(
        "POST",
        "/moderation/organizations/{organization_id}/decision",
        "moderation",
        "/moderation/organizations/{organization_id}/decision",
        MODERATORS,
        "Approve or reject an organisation",
        response=None,
        body=OrganizationDecisionInput,
        status=204,
        problems=("organization_not_awaiting_review", "not_your_department", "already_decided", "reason_required"),
    ),
    Operation(
        "GET",
        "/departments/{department}/dashboard",
        "moderation",
        "/moderation/departments/{department}/dashboard",
        MODERATORS,
        "The department's figures",
        response=Dashboard,
        problems=DEPARTMENT_SCOPE,
    ),
    Operation(
        "GET",
        "/dashboard",
        "moderation",
        "/moderation/dashboard",
        ADMINS,
        "National figures",
        response=Dashboard,
    ),
]
