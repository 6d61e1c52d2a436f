"""Referents, per-department policy and decisions: state from events, commands that return events."""

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

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


# ---- possible duplicates of an organisation (as JeVeuxAider shows them to referents) ----

DuplicateReason = Literal["siret", "rna", "name"]
LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"})


def name_key(name: str) -> str:
    """A name as it may be typed twice: case, accents, punctuation and spacing set aside."""
    decomposed = unicodedata.normalize("NFKD", name.translate(LIGATURES))
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", letters))


def duplicate_reasons(organization: dict[str, Any], other: dict[str, Any]) -> list[DuplicateReason]:
    """Why `other` may be the same organisation registered again: same SIRET, same RNA, or the same
    name in the same department. Registration stays open (a SIRET can be mistyped, an antenna
    share a name): the referent decides, knowing."""
    if other["id"] == organization["id"]:
        return []
    reasons: list[DuplicateReason] = []
    for number in ("siret", "rna"):
        if organization.get(number) and other.get(number) == organization[number]:
            reasons.append(number)  # type: ignore[arg-type]
    same_name = organization.get("name_key") and other.get("name_key") == organization["name_key"]
    if same_name and other.get("department") == organization.get("department"):
        reasons.append("name")
    return reasons


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
