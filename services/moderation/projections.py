"""Read models of the moderation service: referents, policies, the review queue, the territory.

Every document remembers the version of each stream it reflects, so redelivery changes nothing.
"""

from services.moderation.domain import name_key
from shared.events import (
    Envelope,
    Event,
    MissionCancelled,
    MissionChangesRequested,
    MissionClosed,
    MissionDrafted,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionRefused,
    MissionReopened,
    MissionSubmitted,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
    VolunteerProfileUpdated,
    VolunteerRegistered,
)
from shared.events.missions import mission_status_after
from shared.runtime.ports import DocumentStore
from shared.runtime.projections import fresh_document

REFERENTS, POLICIES, QUEUE, MISSIONS, ORGANIZATIONS, VOLUNTEERS = (
    "referents",
    "policies",
    "queue",
    "missions",
    "organizations",
    "volunteers",
)


async def setup(documents: DocumentStore) -> None:
    await documents.ensure_index(QUEUE, ["department", "pending", "submitted_at"])
    await documents.ensure_index(MISSIONS, ["department", "status"])
    await documents.ensure_index(ORGANIZATIONS, ["department", "status"])
    await documents.ensure_index(ORGANIZATIONS, ["siret"])
    await documents.ensure_index(ORGANIZATIONS, ["rna"])
    await documents.ensure_index(ORGANIZATIONS, ["department", "name_key"])
    await documents.ensure_index(VOLUNTEERS, ["department"])


async def on_referent_event(
    documents: DocumentStore, event: ReferentAppointed | ReferentRevoked, env: Envelope
) -> None:
    if doc := await fresh_document(documents, REFERENTS, event.referent_id, env):
        doc["departments"] = event.departments if isinstance(event, ReferentAppointed) else []
        await documents.put(REFERENTS, event.referent_id, doc)


async def on_policy_changed(documents: DocumentStore, event: ModerationPolicyChanged, env: Envelope) -> None:
    if doc := await fresh_document(documents, POLICIES, event.department, env):
        doc["policy"] = event.policy
        await documents.put(POLICIES, event.department, doc)


# ---- the queue: fed by the missions service's submissions and by our own decisions ----


async def on_mission_submitted(documents: DocumentStore, event: MissionSubmitted, env: Envelope) -> None:
    if doc := await fresh_document(documents, QUEUE, event.mission_id, env, version_field="mission_version"):
        doc.update(
            kind="mission",
            organization_id=event.organization_id,
            department=event.content.department,
            title=event.content.title,
            domain=event.content.domain,
            content=event.content.model_dump(mode="json"),
            submissions=doc.get("submissions", 0) + 1,
            submitted_at=env.occurred_at.isoformat(),
            pending=True,
            history=[*doc.get("history", []), step(env, "submitted")],
        )
        await documents.put(QUEUE, event.mission_id, doc)


def step(env: Envelope, what: str, reason: str | None = None, comment: str | None = None) -> dict[str, str | None]:
    """One line of an item's history, as the referents' pages show it: what, when, who, why."""
    return {
        "what": what,
        "at": env.occurred_at.isoformat(),
        "by": env.actor.id,
        "role": env.actor.role,
        "reason": reason,
        "comment": comment,
    }


DECISION_OF = {MissionValidated: "validated", MissionRefused: "refused", MissionChangesRequested: "changes_requested"}


async def on_mission_withdrawn(documents: DocumentStore, event: MissionCancelled, env: Envelope) -> None:
    if doc := await fresh_document(documents, QUEUE, event.mission_id, env, version_field="mission_version"):
        doc["pending"] = False
        doc["history"] = [*doc.get("history", []), step(env, "cancelled")]
        await documents.put(QUEUE, event.mission_id, doc)


async def on_mission_decided(
    documents: DocumentStore, event: MissionValidated | MissionRefused | MissionChangesRequested, env: Envelope
) -> None:
    if doc := await fresh_document(documents, QUEUE, event.mission_id, env, version_field="review_version"):
        doc["decisions"] = env.stream_version
        doc["pending"] = doc["decisions"] < doc.get("submissions", 0)
        doc["decision"] = DECISION_OF[type(event)]
        reason = getattr(event, "reason", None)
        doc["history"] = [*doc.get("history", []), step(env, doc["decision"], reason, event.comment)]
        await documents.put(QUEUE, event.mission_id, doc)


async def on_organization_registered(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
    entry = {
        "kind": "organization",
        "department": event.department,
        "title": event.name,
        "pending": True,
        "submitted_at": env.occurred_at.isoformat(),
        "history": [step(env, "registered")],
    }
    current = await documents.get(QUEUE, event.organization_id)
    if current is None:
        await documents.put(QUEUE, event.organization_id, {"id": event.organization_id, **entry})
    organization = await documents.get(ORGANIZATIONS, event.organization_id) or {"status": "pending"}
    organization.update(
        id=event.organization_id,
        department=event.department,
        name=event.name,
        name_key=name_key(event.name),
        kind=event.kind,
        siret=event.siret,
        rna=event.rna,
        establishment_type=event.establishment_type,
        postal_code=event.postal_code,
        commune=event.commune,
        description=event.description,
        registered_at=env.occurred_at.isoformat(),
    )
    await documents.put(ORGANIZATIONS, event.organization_id, organization)


async def on_organization_decided(
    documents: DocumentStore, event: OrganizationApproved | OrganizationRejected, env: Envelope
) -> None:
    status = "approved" if isinstance(event, OrganizationApproved) else "rejected"
    organization = await documents.get(ORGANIZATIONS, event.organization_id) or {"id": event.organization_id}
    organization.update(department=event.department, status=status)
    await documents.put(ORGANIZATIONS, event.organization_id, organization)
    entry = await documents.get(QUEUE, event.organization_id)
    if entry is not None and entry["pending"]:
        entry["pending"] = False
        entry["decision"] = status
        reason = getattr(event, "reason", None)
        entry["history"] = [*entry.get("history", []), step(env, status, reason, getattr(event, "comment", None))]
        await documents.put(QUEUE, event.organization_id, entry)


# ---- the territory: missions, organisations and volunteers by department ----


async def on_mission_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, MISSIONS, env.stream_id, env)
    if doc is None:
        return
    if content := getattr(event, "content", None):
        doc.update(department=content.department, domain=content.domain, places=content.places)
    doc["status"] = mission_status_after(event, doc.get("status"))
    match event:
        case MissionPublished() | MissionReopened() | MissionPlacesChanged():
            doc["free_places"] = event.free_places
        case MissionFilled():
            doc["free_places"] = 0
    await documents.put(MISSIONS, env.stream_id, doc)


async def on_volunteer_event(
    documents: DocumentStore, event: VolunteerRegistered | VolunteerProfileUpdated, env: Envelope
) -> None:
    if event.department is None:
        return
    if doc := await fresh_document(documents, VOLUNTEERS, event.volunteer_id, env):
        doc["department"] = event.department  # an anonymous fact: it stays after erasure, for statistics
        await documents.put(VOLUNTEERS, event.volunteer_id, doc)


MISSION_EVENTS = (
    MissionDrafted,
    MissionSubmitted,
    MissionModerated,
    MissionPublished,
    MissionFilled,
    MissionReopened,
    MissionPlacesChanged,
    MissionClosed,
    MissionCancelled,
)
