"""Organisations and missions: state rebuilt from events, commands that check rules and return events.

Mission lifecycle:
    draft → submitted → validated → published ⇄ filled → closed
    submitted → refused | changes_requested → (edited) → submitted
    published/filled → unpublished by a referent (post-moderation) → refused | changes_requested
    any live state → cancelled by the organisation
A mission is published only once a referent validated it (pre-moderation) or at once when the
department moderates afterwards (post), and in both cases only if its organisation is approved.
"""

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from shared.contracts.organizations import RNA, siret_is_valid
from shared.errors import Conflict, Invalid
from shared.events import (
    Event,
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationRegistered,
)
from shared.events.missions import MissionStatus, mission_status_after
from shared.events.vocabulary import MissionContent, ModerationPolicy

Decision = Literal["validated", "refused", "changes_requested"]
LIVE: frozenset[MissionStatus] = frozenset(
    {"draft", "submitted", "changes_requested", "validated", "published", "filled"}
)
CLOSE_AFTER_END = timedelta(days=30)

INVALID_ORGANIZATION = Invalid("invalid_organization", "Certaines informations sur l’organisation sont invalides.")
INVALID_MISSION = Invalid("invalid_mission", "Certaines informations sur la mission sont invalides.")
DATES_PAST = Invalid("mission_dates_past", "Les dates de la mission sont déjà passées.")
REASON_REQUIRED = Invalid(
    "reason_required", "Indiquez la raison de l’annulation.", fields={"reason": "Indiquez la raison de l’annulation."}
)
MISSION_EXISTS = Conflict("mission_exists", "Cette mission existe déjà.")
INVALID_TRANSITION = Conflict(
    "invalid_transition", "Cette action n’est pas possible dans l’état où se trouve la mission."
)


# ---- organisations ----


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
        raise INVALID_ORGANIZATION.with_fields(fields)
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
            case MissionPublished() | MissionReopened() | MissionPlacesChanged():
                return replace(mission, free_places=event.free_places)
            case MissionFilled():
                return replace(mission, free_places=0)
        return mission

    @property
    def exists(self) -> bool:
        return self.status is not None

    def require(self, *statuses: MissionStatus) -> None:
        """Refuse a command the mission's status does not allow."""
        if self.status not in statuses:
            raise INVALID_TRANSITION()


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
        raise INVALID_MISSION.with_fields(fields)


# ---- dates: a mission whose end is past can never be published ----

PARIS = ZoneInfo("Europe/Paris")
OVERSEAS_TIME_ZONES = {
    "971": ZoneInfo("America/Guadeloupe"),
    "972": ZoneInfo("America/Martinique"),
    "973": ZoneInfo("America/Cayenne"),
    "974": ZoneInfo("Indian/Reunion"),
    "975": ZoneInfo("America/Miquelon"),
    "976": ZoneInfo("Indian/Mayotte"),
}


def local_date(department: str, moment: datetime) -> date:
    """The day it is at `moment` where the mission takes place (overseas departments keep their own time)."""
    return moment.astimezone(OVERSEAS_TIME_ZONES.get(department, PARIS)).date()


ENDED = "La date de fin est déjà passée : une mission terminée ne peut pas être publiée."


def has_ended(content: MissionContent, now: datetime) -> bool:
    return content.end_date is not None and content.end_date < local_date(content.department, now)


def check_dates(content: MissionContent, now: datetime, begun_on: date | None = None) -> None:
    """No date already past, except the start of a mission that has begun (`begun_on`), which it keeps."""
    fields = {}
    today = local_date(content.department, now)
    if has_ended(content, now):
        fields["end_date"] = ENDED
    if content.start_date is not None and content.start_date < today and content.start_date != begun_on:
        fields["start_date"] = "La date de début est déjà passée : choisissez aujourd’hui ou une date à venir."
    if fields:
        raise DATES_PAST.with_fields(fields)


def draft_mission(mission: Mission, organization_id: str, content: MissionContent, now: datetime) -> list[Event]:
    if mission.exists:
        raise MISSION_EXISTS()
    check_content(content)
    check_dates(content, now)
    return [MissionDrafted(mission_id=mission.id, organization_id=organization_id, content=content)]


def edit_mission(mission: Mission, content: MissionContent, now: datetime) -> list[Event]:
    mission.require("draft", "changes_requested")
    check_content(content)
    assert mission.content is not None
    start = mission.content.start_date
    begun = start if start is not None and start < local_date(mission.content.department, now) else None
    check_dates(content, now, begun_on=begun)
    return [MissionEdited(mission_id=mission.id, organization_id=mission.organization_id, content=content)]


def submit_mission(
    mission: Mission, policy: ModerationPolicy, organization_approved: bool, now: datetime, accepted: int = 0
) -> list[Event]:
    """Submit for moderation (published at once under post-moderation); a mission already over cannot be."""
    mission.require("draft", "changes_requested")
    assert mission.content is not None
    if has_ended(mission.content, now):
        raise DATES_PAST.with_fields({"end_date": ENDED})
    submitted = MissionSubmitted(
        mission_id=mission.id, organization_id=mission.organization_id, content=mission.content, moderation=policy
    )
    return [submitted, *publish_if_ready(mission.apply(submitted), organization_approved, now, accepted)]


def publish_if_ready(mission: Mission, organization_approved: bool, now: datetime, accepted: int = 0) -> list[Event]:
    """Publish a mission cleared by moderation (validated, or submitted under post-moderation), unless its
    end is past (it stays validated and closes by itself). `accepted` volunteers kept from an earlier
    publication (before a post-moderation review took it offline) still hold their places."""
    cleared = mission.status == "validated" or (mission.status == "submitted" and mission.moderation == "post")
    if not (cleared and organization_approved):
        return []
    assert mission.content is not None
    if has_ended(mission.content, now):
        return []
    free = max(0, mission.content.places - accepted)
    common = {"mission_id": mission.id, "organization_id": mission.organization_id}
    published = MissionPublished(**common, content=mission.content, free_places=free)
    return [published] if free else [published, MissionFilled(**common)]


def apply_decision(
    mission: Mission,
    decision: Decision,
    reason: str | None,
    comment: str | None,
    organization_approved: bool,
    now: datetime,
    accepted: int = 0,
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
    return events + publish_if_ready(mission.apply(moderated), organization_approved, now, accepted)


def update_capacity(mission: Mission, accepted: int) -> list[Event]:
    """Follow the places taken by accepted volunteers: filled when every place is taken, reopened when one
    frees, and every other change of a published mission's free places told as it happens."""
    if mission.content is None:
        return []
    free = max(0, mission.content.places - accepted)
    common = {"mission_id": mission.id, "organization_id": mission.organization_id}
    if mission.status == "published" and free == 0:
        return [MissionFilled(**common)]
    if mission.status == "published" and free != mission.free_places:
        return [MissionPlacesChanged(**common, free_places=free)]
    if mission.status == "filled" and free > 0:
        return [MissionReopened(**common, free_places=free)]
    return []


def close_mission(mission: Mission) -> list[Event]:
    mission.require("validated", "published", "filled")
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
    mission.require(*LIVE)
    if not reason.strip():
        raise REASON_REQUIRED()
    return [MissionCancelled(mission_id=mission.id, organization_id=mission.organization_id, reason=reason.strip())]
