"""Read models of the volunteers service. None holds personal data in clear: names, contacts and
messages stay sealed and are opened at read time, so erasing a volunteer's key scrubs them too."""

from shared.events import (
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionFilled,
    MissionPublished,
    MissionReopened,
    MissionUnpublished,
    OrganizationRegistered,
    VolunteerErased,
    VolunteerLeftWaitlist,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    VolunteerWaitlisted,
)
from shared.events.missions import mission_status_after
from shared.events.volunteers import ApplicationEvent
from shared.runtime.ports import DocumentStore
from shared.runtime.projections import fresh_document

VOLUNTEERS, APPLICATIONS, WAITLIST = "volunteers", "applications", "waitlist"
MISSIONS, ORGANIZATIONS, EMAILS = "missions", "organizations", "email_index"
MISSION_EVENTS = (MissionPublished, MissionFilled, MissionReopened, MissionClosed, MissionCancelled, MissionUnpublished)
ROSTER_EVENTS = (
    ApplicationReceived,
    ApplicationAccepted,
    ApplicationRefused,
    ApplicationWithdrawn,
    ApplicationCancelled,
    VolunteerWaitlisted,
    VolunteerLeftWaitlist,
)


async def setup(documents: DocumentStore) -> None:
    await documents.ensure_index(APPLICATIONS, ["volunteer_id", "status"])
    await documents.ensure_index(APPLICATIONS, ["mission_id", "status"])
    await documents.ensure_index(WAITLIST, ["mission_id", "active"])
    await documents.ensure_index(WAITLIST, ["volunteer_id", "active"])


async def on_volunteer_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, VOLUNTEERS, env.stream_id, env)
    if doc is None:
        return
    if isinstance(event, VolunteerErased):
        doc = {
            "id": doc["id"],
            "version": doc["version"],
            "department": event.department,
            "age_bracket": event.age_bracket,
            "erased": True,
        }
    else:
        clear = event.model_dump(mode="json", exclude={"volunteer_id", "personal"}, exclude_none=True)
        doc.update(clear, erased=False)
        if isinstance(event, VolunteerRegistered):
            doc["registered_at"] = env.occurred_at.isoformat()
    await documents.put(VOLUNTEERS, env.stream_id, doc)


async def on_roster_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    if isinstance(event, VolunteerWaitlisted | VolunteerLeftWaitlist):
        doc = await fresh_document(documents, WAITLIST, f"{event.mission_id}:{event.volunteer_id}", env)
        if doc is None:
            return
        doc.update(
            mission_id=event.mission_id, volunteer_id=event.volunteer_id, active=isinstance(event, VolunteerWaitlisted)
        )
        if doc["active"]:
            doc["since"] = env.occurred_at.isoformat()
        await documents.put(WAITLIST, doc["id"], doc)
        return
    assert isinstance(event, ApplicationEvent)
    doc = await fresh_document(documents, APPLICATIONS, event.application_id, env)
    if doc is None:
        return
    match event:
        case ApplicationReceived():
            doc.update(
                mission_id=event.mission_id,
                volunteer_id=event.volunteer_id,
                organization_id=event.organization_id,
                status="pending",
                promoted_from_waitlist=event.promoted_from_waitlist,
                message=event.message.model_dump() if event.message else None,
                applied_at=env.occurred_at.isoformat(),
            )
            # a promotion takes the volunteer off the waitlist
            waiting = await documents.get(WAITLIST, f"{event.mission_id}:{event.volunteer_id}")
            if waiting and waiting["active"]:
                await documents.put(WAITLIST, waiting["id"], {**waiting, "active": False})
        case ApplicationAccepted():
            doc["status"] = "accepted"
        case ApplicationRefused() | ApplicationWithdrawn() | ApplicationCancelled():
            doc["status"] = {
                ApplicationRefused: "refused",
                ApplicationWithdrawn: "withdrawn",
                ApplicationCancelled: "cancelled",
            }[type(event)]
            doc["reason"] = event.reason
    doc["updated_at"] = env.occurred_at.isoformat()
    await documents.put(APPLICATIONS, event.application_id, doc)


async def on_mission_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, MISSIONS, env.stream_id, env)
    if doc is None:
        return
    if isinstance(event, MissionPublished):
        content = event.content
        doc.update(
            organization_id=event.organization_id,
            title=content.title,
            places=content.places,
            remote=content.remote,
            open_to_minors=content.open_to_minors,
            department=content.department,
        )
    if isinstance(event, MissionUnpublished):
        doc["status"] = "unpublished"
    else:
        doc["status"] = mission_status_after(event, doc.get("status"))
    await documents.put(MISSIONS, env.stream_id, doc)


async def on_organization_registered(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
    await documents.put(ORGANIZATIONS, event.organization_id, {"manager_ids": event.manager_ids})


async def manager_ids(documents: DocumentStore, organization_id: str) -> list[str]:
    """The organisation's managers (none while its registration is not projected)."""
    found = await documents.get(ORGANIZATIONS, organization_id)
    return list(found["manager_ids"]) if found else []


VOLUNTEER_EVENTS = (VolunteerRegistered, VolunteerProfileUpdated, VolunteerErased)
