"""Organisations and missions: state rebuilt from events, commands that check rules and return events.

Mission lifecycle:
    draft → submitted → validated → published ⇄ filled → closed
    submitted → refused | changes_requested → (edited) → submitted
    published/filled → unpublished by a referent (post-moderation) → refused | changes_requested
    any live state → cancelled by the organisation
A mission is published only once a referent validated it (pre-moderation) or at once when the
department moderates afterwards (post), and in both cases only if its organisation is approved.
"""

import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from shared.events import (
    Event,
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationRegistered,
)
from shared.events.missions import MissionStatus, mission_status_after
from shared.events.vocabulary import MissionContent, ModerationPolicy
from shared.runtime.problems import Problem

Decision = Literal["validated", "refused", "changes_requested"]
LIVE: frozenset[MissionStatus] = frozenset(
    {"draft", "submitted", "changes_requested", "validated", "published", "filled"}
)
CLOSE_AFTER_END = timedelta(days=30)


def refused(code: str, detail: str, status: int = 409) -> Problem:
    return Problem(status, code, detail)


# ---- organisations ----

SIRET = re.compile(r"^\d{14}$")
RNA = re.compile(r"^W\d{9}$")
LA_POSTE_SIREN = "356000000"  # its SIRETs follow their own checksum rule


def siret_is_valid(siret: str) -> bool:
    """14 digits with a valid Luhn checksum (La Poste's offices may instead have a digit sum multiple of 5)."""
    if not SIRET.match(siret):
        return False
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(siret)):
        doubled = digit * 2 if i % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    la_poste_office = siret.startswith(LA_POSTE_SIREN) and sum(int(d) for d in siret) % 5 == 0
    return total % 10 == 0 or la_poste_office


def register_organization(registration: OrganizationRegistered) -> list[Event]:
    """Check an organisation's identity numbers; a new organisation is pending until a referent decides."""
    fields = {}
    if not registration.name.strip():
        fields["name"] = "Le nom est obligatoire."
    if registration.siret is None and registration.rna is None:
        fields["siret"] = "Indiquez un numéro SIRET ou RNA."
    if registration.siret is not None and not siret_is_valid(registration.siret):
        fields["siret"] = "Le numéro SIRET doit compter 14 chiffres valides."
    if registration.rna is not None and not RNA.match(registration.rna):
        fields["rna"] = "Le numéro RNA commence par W suivi de 9 chiffres."
    if fields:
        raise Problem(
            422, "invalid_organization", "Certaines informations sur l’organisation sont invalides.", fields=fields
        )
    return [registration]


# ---- missions ----


@dataclass(frozen=True)
class Mission:
    id: str
    organization_id: str = ""
    status: MissionStatus | None = None
    content: MissionContent | None = None
    moderation: ModerationPolicy = "pre"
    free_places: int = 0

    @classmethod
    def replay(cls, mission_id: str, events: list[Event]) -> "Mission":
        mission = cls(mission_id)
        for event in events:
            mission = mission.apply(event)
        return mission

    def apply(self, event: Event) -> "Mission":
        mission = replace(self, status=mission_status_after(event, self.status))
        match event:
            case MissionDrafted():
                return replace(mission, organization_id=event.organization_id, content=event.content)
            case MissionEdited():
                return replace(mission, content=event.content)
            case MissionSubmitted():
                return replace(mission, content=event.content, moderation=event.moderation or "pre")
            case MissionPublished() | MissionReopened():
                return replace(mission, free_places=event.free_places)
            case MissionFilled():
                return replace(mission, free_places=0)
        return mission

    @property
    def exists(self) -> bool:
        return self.status is not None

    def require(self, *statuses: MissionStatus, action: str) -> None:
        if self.status not in statuses:
            raise refused(
                "invalid_transition",
                f"Impossible de {action} une mission {STATUS_LABELS.get(self.status or '', 'inexistante')}.",
            )


STATUS_LABELS = {
    "draft": "en brouillon",
    "submitted": "en attente de validation",
    "changes_requested": "à modifier",
    "refused": "refusée",
    "validated": "validée (organisation en attente)",
    "published": "en ligne",
    "filled": "complète",
    "closed": "terminée",
    "cancelled": "annulée",
}


def check_content(content: MissionContent) -> None:
    """The rules of DOMAIN.md a mission's content must meet before anyone sees it."""
    fields = {}
    if not content.remote:
        if content.place is None:
            fields["place"] = "Une mission sur place doit indiquer son lieu."
        if content.safety is None or not (
            content.safety.distancing or content.safety.protective_equipment or content.safety.supervision
        ):
            fields["safety"] = "Une mission sur place doit préciser ses conditions de sécurité."
    if content.start_date and content.end_date and content.end_date < content.start_date:
        fields["end_date"] = "La date de fin précède la date de début."
    if any(len(p) > 100 or not p.strip() for p in content.prerequisites):
        fields["prerequisites"] = "Chaque prérequis compte de 1 à 100 caractères."
    if fields:
        raise Problem(422, "invalid_mission", "Certaines informations sur la mission sont invalides.", fields=fields)


def draft_mission(mission: Mission, organization_id: str, content: MissionContent) -> list[Event]:
    if mission.exists:
        raise refused("mission_exists", "Cette mission existe déjà.")
    check_content(content)
    return [MissionDrafted(mission_id=mission.id, organization_id=organization_id, content=content)]


def edit_mission(mission: Mission, content: MissionContent) -> list[Event]:
    mission.require("draft", "changes_requested", action="modifier")
    check_content(content)
    return [MissionEdited(mission_id=mission.id, organization_id=mission.organization_id, content=content)]


def submit_mission(mission: Mission, policy: ModerationPolicy, organization_approved: bool) -> list[Event]:
    mission.require("draft", "changes_requested", action="soumettre")
    assert mission.content is not None
    submitted = MissionSubmitted(
        mission_id=mission.id, organization_id=mission.organization_id, content=mission.content, moderation=policy
    )
    return [submitted, *publish_if_ready(mission.apply(submitted), organization_approved)]


def publish_if_ready(mission: Mission, organization_approved: bool) -> list[Event]:
    """Publish a mission cleared by moderation (validated, or submitted under post-moderation)."""
    cleared = mission.status == "validated" or (mission.status == "submitted" and mission.moderation == "post")
    if not (cleared and organization_approved):
        return []
    assert mission.content is not None
    return [
        MissionPublished(
            mission_id=mission.id,
            organization_id=mission.organization_id,
            content=mission.content,
            free_places=mission.content.places,
        )
    ]


def apply_decision(
    mission: Mission, decision: Decision, reason: str | None, comment: str | None, organization_approved: bool
) -> list[Event]:
    """Apply a referent's decision; a decision the mission already reflects changes nothing."""
    reviewable = ("submitted", "published", "filled") if mission.moderation == "post" else ("submitted",)
    if mission.status not in reviewable:
        return []  # redelivered, or overtaken by the organisation (cancelled meanwhile)
    moderated = MissionModerated(
        mission_id=mission.id,
        organization_id=mission.organization_id,
        decision=decision,
        reason=reason,
        comment=comment,
    )
    events: list[Event] = [moderated]
    if decision != "validated" and mission.status in ("published", "filled"):
        assert mission.content is not None
        events.append(
            MissionUnpublished(
                mission_id=mission.id,
                organization_id=mission.organization_id,
                department=mission.content.department,
                reason=comment or reason or decision,
            )
        )
    return events + publish_if_ready(mission.apply(moderated), organization_approved)


def update_capacity(mission: Mission, accepted: int) -> list[Event]:
    """Filled when every place is taken; reopened when one frees."""
    if mission.content is None:
        return []
    free = max(0, mission.content.places - accepted)
    if mission.status == "published" and free == 0:
        return [MissionFilled(mission_id=mission.id, organization_id=mission.organization_id)]
    if mission.status == "filled" and free > 0:
        return [MissionReopened(mission_id=mission.id, organization_id=mission.organization_id, free_places=free)]
    return []


def close_mission(mission: Mission) -> list[Event]:
    mission.require("validated", "published", "filled", action="clôturer")
    return [
        MissionClosed(mission_id=mission.id, organization_id=mission.organization_id, reason="closed_by_organization")
    ]


def close_if_ended(mission: Mission, today: date) -> list[Event]:
    """One month after its end date a live mission closes by itself (as JeVeuxAider does)."""
    end = mission.content.end_date if mission.content else None
    if mission.status not in ("validated", "published", "filled") or end is None or today < end + CLOSE_AFTER_END:
        return []
    return [MissionClosed(mission_id=mission.id, organization_id=mission.organization_id, reason="ended")]


def cancel_mission(mission: Mission, reason: str) -> list[Event]:
    mission.require(*LIVE, action="annuler")
    if not reason.strip():
        raise Problem(422, "reason_required", "Indiquez la raison de l’annulation.", fields={"reason": "obligatoire"})
    return [MissionCancelled(mission_id=mission.id, organization_id=mission.organization_id, reason=reason.strip())]
