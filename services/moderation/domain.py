"""Referents, per-department policy and decisions: state from events, commands that return events."""

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from shared.contracts.moderation import DuplicateReason, MissionDecision, OrganizationDecision
from shared.errors import Conflict, Invalid, NotFound
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

ALREADY_DECIDED = Conflict("already_decided", "Un autre référent a déjà traité cette demande.")
REFERENT_NOT_FOUND = NotFound("referent_not_found", "Cette personne n’est pas référente.")
DEPARTMENTS_REQUIRED = Invalid("departments_required", "Indiquez au moins un département.")
MISSION_NOT_AWAITING = NotFound("mission_not_awaiting_review", "Cette mission n’attend pas de décision.")
ORGANIZATION_NOT_AWAITING = NotFound("organization_not_awaiting_review", "Cette organisation n’attend pas de décision.")
UNSAFE_MISSION = Invalid(
    "unsafe_mission", "Une mission sur place sans conditions de sécurité ne peut pas être validée."
)
REASON_REQUIRED = Invalid(
    "reason_required", "Choisissez le motif du refus.", fields={"reason": "Choisissez le motif du refus."}
)
COMMENT_REQUIRED = Invalid(
    "comment_required",
    "Expliquez les modifications attendues.",
    fields={"comment": "Expliquez les modifications attendues."},
)


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
        raise DEPARTMENTS_REQUIRED()
    if sorted(set(departments)) == sorted(referent.departments):
        return []
    return [ReferentAppointed(referent_id=referent.id, departments=sorted(set(departments)))]


def revoke_referent(referent: Referent) -> list[Event]:
    if not referent.departments:
        raise REFERENT_NOT_FOUND()
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
    awaiting: AwaitingReview,
    decision: MissionDecision,
    reason: MissionRefusalReason | None,
    comment: str | None,
) -> list[Event]:
    """One decision per submission (whoever decides may: the handler checked it)."""
    if decisions_made >= awaiting.submissions:
        raise ALREADY_DECIDED()
    common = {"mission_id": mission_id, "organization_id": awaiting.organization_id, "department": awaiting.department}
    if decision == "validate":
        content = awaiting.content
        if not content.remote and (content.safety is None or content.place is None):
            raise UNSAFE_MISSION()
        return [MissionValidated(**common, comment=comment)]
    if decision == "refuse":
        if reason is None:
            raise REASON_REQUIRED()
        return [MissionRefused(**common, reason=reason, comment=comment)]
    if not comment:
        raise COMMENT_REQUIRED()
    return [MissionChangesRequested(**common, comment=comment)]


# ---- possible duplicates of an organisation (as JeVeuxAider shows them to referents) ----

IDENTITY_NUMBERS: tuple[DuplicateReason, ...] = ("siret", "rna")
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
    for number in IDENTITY_NUMBERS:
        if organization.get(number) and other.get(number) == organization[number]:
            reasons.append(number)
    same_name = organization.get("name_key") and other.get("name_key") == organization["name_key"]
    if same_name and other.get("department") == organization.get("department"):
        reasons.append("name")
    return reasons


def decide_organization(
    organization_id: str,
    already_decided: bool,
    department: str,
    decision: OrganizationDecision,
    reason: OrganizationRejectionReason | None,
    comment: str | None,
) -> list[Event]:
    """One decision per organisation, in its department (whoever decides may: the handler checked it)."""
    if already_decided:
        raise ALREADY_DECIDED()
    if decision == "approve":
        return [OrganizationApproved(organization_id=organization_id, department=department)]
    if reason is None:
        raise REASON_REQUIRED()
    return [
        OrganizationRejected(organization_id=organization_id, department=department, reason=reason, comment=comment)
    ]
