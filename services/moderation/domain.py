"""Referents, per-department policy and decisions: state from events, commands that return events."""

from dataclasses import dataclass
from typing import Literal

from shared.events import (
    Event,
    MissionChangesRequested,
    MissionRefused,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
)
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason
from shared.events.vocabulary import MissionContent, ModerationPolicy
from shared.runtime.problems import Problem

MissionDecision = Literal["validate", "refuse", "request_changes"]
OrganizationDecision = Literal["approve", "reject"]

OUTSIDE_DEPARTMENTS = Problem(
    403, "outside_your_departments", "Ce département ne fait pas partie de ceux dont vous êtes référent."
)
ALREADY_DECIDED = Problem(409, "already_decided", "Un autre référent a déjà traité cette demande.")


@dataclass(frozen=True)
class Referent:
    id: str
    departments: tuple[str, ...] = ()

    @classmethod
    def replay(cls, referent_id: str, events: list[Event]) -> "Referent":
        referent = cls(referent_id)
        for event in events:
            if isinstance(event, ReferentAppointed):
                referent = cls(referent_id, tuple(event.departments))
            elif isinstance(event, ReferentRevoked):
                referent = cls(referent_id)
        return referent


def appoint_referent(referent: Referent, departments: list[str]) -> list[Event]:
    """Appoint (or re-appoint with other departments); nothing when the departments are the same."""
    if not departments:
        raise Problem(422, "departments_required", "Indiquez au moins un département.")
    if sorted(set(departments)) == sorted(referent.departments):
        return []
    return [ReferentAppointed(referent_id=referent.id, departments=sorted(set(departments)))]


def revoke_referent(referent: Referent) -> list[Event]:
    if not referent.departments:
        raise Problem(404, "referent_not_found", "Cette personne n’est pas référente.")
    return [ReferentRevoked(referent_id=referent.id)]


def change_policy(department: str, current: ModerationPolicy, wanted: ModerationPolicy) -> list[Event]:
    return [] if current == wanted else [ModerationPolicyChanged(department=department, policy=wanted)]


@dataclass(frozen=True)
class AwaitingReview:
    """What the queue knows of a mission: its department and content, and how often it was submitted."""

    organization_id: str
    department: str
    content: MissionContent
    submissions: int


def decide_mission(
    mission_id: str,
    decisions_made: int,
    awaiting: AwaitingReview | None,
    referent_departments: tuple[str, ...] | None,
    decision: MissionDecision,
    reason: MissionRefusalReason | None,
    comment: str | None,
) -> list[Event]:
    """One decision per submission, by a referent of the mission's department (None: an admin)."""
    if awaiting is None:
        raise Problem(404, "mission_not_awaiting_review", "Cette mission n’attend pas de décision.")
    if referent_departments is not None and awaiting.department not in referent_departments:
        raise OUTSIDE_DEPARTMENTS
    if decisions_made >= awaiting.submissions:
        raise ALREADY_DECIDED
    common = {"mission_id": mission_id, "organization_id": awaiting.organization_id, "department": awaiting.department}
    if decision == "validate":
        content = awaiting.content
        if not content.remote and (content.safety is None or content.place is None):
            raise Problem(
                422, "unsafe_mission", "Une mission sur place sans conditions de sécurité ne peut pas être validée."
            )
        return [MissionValidated(**common, comment=comment)]
    if decision == "refuse":
        if reason is None:
            raise Problem(422, "reason_required", "Choisissez le motif du refus.", fields={"reason": "obligatoire"})
        return [MissionRefused(**common, reason=reason, comment=comment)]
    if not comment:
        raise Problem(
            422, "comment_required", "Expliquez les modifications attendues.", fields={"comment": "obligatoire"}
        )
    return [MissionChangesRequested(**common, comment=comment)]


def decide_organization(
    organization_id: str,
    already_decided: bool,
    department: str | None,
    referent_departments: tuple[str, ...] | None,
    decision: OrganizationDecision,
    reason: OrganizationRejectionReason | None,
    comment: str | None,
) -> list[Event]:
    if department is None:
        raise Problem(404, "organization_not_awaiting_review", "Cette organisation n’attend pas de décision.")
    if referent_departments is not None and department not in referent_departments:
        raise OUTSIDE_DEPARTMENTS
    if already_decided:
        raise ALREADY_DECIDED
    if decision == "approve":
        return [OrganizationApproved(organization_id=organization_id, department=department)]
    if reason is None:
        raise Problem(422, "reason_required", "Choisissez le motif du refus.", fields={"reason": "obligatoire"})
    return [
        OrganizationRejected(organization_id=organization_id, department=department, reason=reason, comment=comment)
    ]
