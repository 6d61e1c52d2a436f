"""Events of the moderation service: referents, per-department policy, decisions."""

from typing import Literal

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Department, ModerationPolicy

MissionRefusalReason = Literal[
    "outside_priority_domains",
    "unsafe_conditions",
    "not_a_volunteer_mission",
    "duplicate",
    "other",
]
OrganizationRejectionReason = Literal["not_eligible", "unverifiable_identity", "duplicate", "other"]


class ReferentEvent(Event):
    topic = "moderation.referent"
    referent_id: str

    def stream_id(self) -> str:
        return self.referent_id


@catalog.register
class ReferentAppointed(ReferentEvent):
    departments: list[Department]


@catalog.register
class ReferentRevoked(ReferentEvent):
    pass


def department_stream(department: str) -> str:
    """The stream of a department's moderation settings (prefixed: stream ids share one store)."""
    return f"department-{department}"


@catalog.register
class ModerationPolicyChanged(Event):
    topic = "moderation.department_policy"
    department: Department
    policy: ModerationPolicy

    def stream_id(self) -> str:
        return department_stream(self.department)


class MissionReviewEvent(Event):
    topic = "moderation.mission_review"
    mission_id: str
    organization_id: str
    department: Department

    def stream_id(self) -> str:
        return self.mission_id


@catalog.register
class MissionValidated(MissionReviewEvent):
    comment: str | None = None


@catalog.register
class MissionRefused(MissionReviewEvent):
    reason: MissionRefusalReason
    comment: str | None = None


@catalog.register
class MissionChangesRequested(MissionReviewEvent):
    comment: str


class OrganizationReviewEvent(Event):
    topic = "moderation.organization_review"
    organization_id: str
    department: Department

    def stream_id(self) -> str:
        return self.organization_id


@catalog.register
class OrganizationApproved(OrganizationReviewEvent):
    pass


@catalog.register
class OrganizationRejected(OrganizationReviewEvent):
    reason: OrganizationRejectionReason
    comment: str | None = None
