"""The notifications service's own view of the platform: who is who (sealed contact details, roles,
departments), organisations and their managers, missions and applications. Fed by every service's
events, one projection per event type (`PROJECTIONS`); each document keeps the version of its stream, so a
redelivered event changes nothing."""

from collections.abc import Awaitable, Callable
from typing import Any

from shared.events import (
    AccountOpened,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationEvent,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionEvent,
    MissionFilled,
    MissionModerated,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentInvited,
    ReferentRevoked,
    VolunteerErased,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    mission_status_after,
)
from shared.runtime.ports import DocumentStore
from shared.runtime.projections import fresh_document

PEOPLE, ORGANIZATIONS, MISSIONS, APPLICATIONS = "people", "organizations", "missions", "applications"
APPLICATION_STATUS: dict[type[ApplicationEvent], str] = {
    ApplicationReceived: "pending",
    ApplicationAccepted: "accepted",
    ApplicationRefused: "refused",
    ApplicationWithdrawn: "withdrawn",
    ApplicationCancelled: "cancelled",
}


async def setup(documents: DocumentStore) -> None:
    await documents.ensure_index(PEOPLE, ["department", "role"])
    await documents.ensure_index(MISSIONS, ["status"])
    await documents.ensure_index(APPLICATIONS, ["status", "received_at"])
    await documents.ensure_index(APPLICATIONS, ["mission_id", "status"])


async def project(documents: DocumentStore, event: Event, env: Envelope) -> None:
    """Apply one event to the read models (idempotent); an event no projection reads changes nothing."""
    projection = PROJECTIONS.get(type(event))
    if projection is not None:
        await projection(documents, event, env)


async def _on_account(documents: DocumentStore, event: AccountOpened, env: Envelope) -> None:
    doc = await fresh_document(documents, PEOPLE, event.account_id, env, "account_version")
    if doc is not None:
        # a volunteer's sealed personal data holds their first name too: it stays their contact
        doc.setdefault("contact", event.email.model_dump())
        await documents.put(PEOPLE, event.account_id, {**doc, "role": doc.get("role", event.role)})


async def _on_invitation(documents: DocumentStore, event: ReferentInvited, env: Envelope) -> None:
    # the invitee has no account yet: the invitation (e-mail and token, sealed) is their contact
    doc = await fresh_document(documents, PEOPLE, invitee_id(event.invitation_id), env)
    if doc is not None:
        await documents.put(PEOPLE, doc["id"], {**doc, "role": "invitee", "contact": event.invitation.model_dump()})


async def _on_referent(documents: DocumentStore, event: ReferentAppointed | ReferentRevoked, env: Envelope) -> None:
    doc = await fresh_document(documents, PEOPLE, event.referent_id, env, "referent_version")
    if doc is not None:
        departments = event.departments if isinstance(event, ReferentAppointed) else []
        await documents.put(PEOPLE, event.referent_id, {**doc, "departments": departments})


async def _on_organization_registered(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
    doc = await fresh_document(documents, ORGANIZATIONS, event.organization_id, env)
    if doc is not None:
        await documents.put(
            ORGANIZATIONS,
            event.organization_id,
            {
                **doc,
                "name": event.name,
                "kind": event.kind,
                "siret": event.siret,
                "rna": event.rna,
                "department": event.department,
                "commune": event.commune,
                "manager_ids": event.manager_ids,
                "status": doc.get("status", "pending"),
            },
        )


async def _on_organization_review(
    documents: DocumentStore, event: OrganizationApproved | OrganizationRejected, env: Envelope
) -> None:
    doc = await fresh_document(documents, ORGANIZATIONS, event.organization_id, env, "review_version")
    if doc is not None:
        status = "approved" if isinstance(event, OrganizationApproved) else "rejected"
        await documents.put(ORGANIZATIONS, event.organization_id, {**doc, "status": status})


async def _on_application(documents: DocumentStore, event: ApplicationEvent, env: Envelope) -> None:
    doc = await fresh_document(documents, APPLICATIONS, event.application_id, env)
    if doc is not None:
        doc |= {
            "mission_id": event.mission_id,
            "volunteer_id": event.volunteer_id,
            "organization_id": event.organization_id,
            "status": APPLICATION_STATUS[type(event)],
        }
        if isinstance(event, ApplicationReceived):
            doc["received_at"] = env.occurred_at.isoformat()
        await documents.put(APPLICATIONS, event.application_id, doc)


async def _on_volunteer(
    documents: DocumentStore, event: VolunteerRegistered | VolunteerProfileUpdated | VolunteerErased, env: Envelope
) -> None:
    doc = await fresh_document(documents, PEOPLE, event.volunteer_id, env, "volunteer_version")
    if doc is None:
        return
    doc["role"] = "volunteer"
    match event:
        case VolunteerErased():
            doc = {"id": doc["id"], "role": "volunteer", "erased": True, "volunteer_version": doc["volunteer_version"]}
        case VolunteerRegistered() | VolunteerProfileUpdated():
            if event.personal is not None:
                doc["contact"] = event.personal.model_dump()
            if event.department is not None:
                doc["department"] = event.department
    await documents.put(PEOPLE, doc["id"], doc)


async def _on_mission(documents: DocumentStore, event: MissionEvent, env: Envelope) -> None:
    doc = await fresh_document(documents, MISSIONS, event.mission_id, env)
    if doc is None:
        return
    if isinstance(event, MissionDrafted | MissionEdited | MissionSubmitted | MissionPublished):
        content = event.content
        doc |= {
            "title": content.title,
            "domain": content.domain,
            "department": content.department,
            "commune": content.place.commune if content.place else None,
            "remote": content.remote,
            "places": content.places,
            "end_date": content.end_date.isoformat() if content.end_date else None,
        }
        if isinstance(event, MissionSubmitted):
            doc["submitted_at"] = env.occurred_at.isoformat()
    if isinstance(event, MissionModerated):
        # kept per decision: a redelivered decision must be told the way it was the first time
        doc.setdefault("online_at_decision", {})[str(env.stream_version)] = doc.get("status") in ("published", "filled")
    # every mission event names its organisation, though the base class does not declare it
    doc["organization_id"] = getattr(event, "organization_id", doc.get("organization_id"))
    doc["status"] = mission_status_after(event, doc.get("status"))
    await documents.put(MISSIONS, event.mission_id, doc)


Projection = Callable[[DocumentStore, Any, Envelope], Awaitable[None]]
MISSION_EVENTS: tuple[type[MissionEvent], ...] = (
    MissionDrafted,
    MissionEdited,
    MissionSubmitted,
    MissionModerated,
    MissionPublished,
    MissionUnpublished,
    MissionFilled,
    MissionReopened,
    MissionClosed,
    MissionCancelled,
)
PROJECTIONS: dict[type[Event], Projection] = {
    **dict.fromkeys((VolunteerRegistered, VolunteerProfileUpdated, VolunteerErased), _on_volunteer),
    AccountOpened: _on_account,
    ReferentInvited: _on_invitation,
    ReferentAppointed: _on_referent,
    ReferentRevoked: _on_referent,
    OrganizationRegistered: _on_organization_registered,
    OrganizationApproved: _on_organization_review,
    OrganizationRejected: _on_organization_review,
    **dict.fromkeys(MISSION_EVENTS, _on_mission),
    **dict.fromkeys(APPLICATION_STATUS, _on_application),
}


def invitee_id(invitation_id: str) -> str:
    return f"invitation-{invitation_id}"


def person_announced(event: Event) -> str | None:
    """The person whose contact details `event` brings (its projection writes their document), if any."""
    match event:
        case VolunteerRegistered():
            return event.volunteer_id
        case AccountOpened():
            return event.account_id
        case ReferentInvited():
            return invitee_id(event.invitation_id)
    return None


async def person(documents: DocumentStore, person_id: str) -> dict[str, Any] | None:
    return await documents.get(PEOPLE, person_id)


async def managers_of(documents: DocumentStore, organization_id: str) -> list[str]:
    organization = await documents.get(ORGANIZATIONS, organization_id)
    # its review may come before its registration (another topic): no managers known yet
    return list(organization.get("manager_ids", ())) if organization else []


async def referents_of(documents: DocumentStore, department: str) -> list[str]:
    """The referents of a department (a referent's departments are a list: scanned, referents are few)."""
    referents = await documents.find(PEOPLE, {"departments": {"$exists": True}})
    return sorted(r["id"] for r in referents if department in r.get("departments", ()))


async def accepted_count(documents: DocumentStore, mission_id: str) -> int:
    return await documents.count(APPLICATIONS, {"mission_id": mission_id, "status": "accepted"})


async def idle_volunteers(documents: DocumentStore, department: str) -> list[str]:
    """Volunteers of the department without an accepted application (DOMAIN.md flow 5: the unmatched)."""
    volunteers = await documents.find(PEOPLE, {"department": department, "role": "volunteer"})
    engaged = {a["volunteer_id"] for a in await documents.find(APPLICATIONS, {"status": "accepted"})}
    return sorted(v["id"] for v in volunteers if not v.get("erased") and v["id"] not in engaged)
