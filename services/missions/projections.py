"""Read models of the missions service, fed by its own events and by other services' events.

Each document has one writer (one consumer group), and remembers the stream version it reflects:
a redelivered or older event changes nothing.
"""

from typing import Any, Literal, TypedDict

from shared.events import (
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionCancelled,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionReopened,
    MissionUnpublished,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    ReferentRevoked,
)
from shared.events.missions import MissionDrafted, MissionSubmitted, mission_status_after
from shared.events.moderation import OrganizationRejectionReason
from shared.events.vocabulary import ModerationPolicy
from shared.runtime.ports import DocumentStore

ORGANIZATIONS, DECISIONS, MISSIONS = "organizations", "organization_decisions", "missions"
POLICIES, PLACES, REFERENTS = "policies", "accepted_places", "referents"
CONTENT_EVENTS = (MissionDrafted, MissionEdited, MissionSubmitted, MissionPublished)
APPLICATION_EVENTS = (ApplicationAccepted, ApplicationWithdrawn, ApplicationCancelled, ApplicationRefused)
ApplicationEvent = ApplicationAccepted | ApplicationWithdrawn | ApplicationCancelled | ApplicationRefused


class OrganizationDecisionDocument(TypedDict):
    """`organization_decisions`: a referent's decision on an organisation (none while pending)."""

    status: Literal["pending", "approved", "rejected"]
    rejection: OrganizationRejectionReason | None


class PolicyDocument(TypedDict):
    """`policies`: a department's moderation policy, by department code."""

    policy: ModerationPolicy
    version: int


class ReferentDocument(TypedDict):
    """`referents`: the departments a referent is appointed to (none once revoked)."""

    departments: list[str]
    version: int


async def setup(documents: DocumentStore) -> None:
    await documents.ensure_index(MISSIONS, ["organization_id", "status"])
    await documents.ensure_index(MISSIONS, ["status", "end_date"])
    await documents.ensure_index(PLACES, ["mission_id", "accepted"])


async def on_organization_registered(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
    await documents.put(
        ORGANIZATIONS,
        event.organization_id,
        {
            **event.model_dump(mode="json", exclude={"organization_id"}),
            "id": event.organization_id,
            "registered_at": env.occurred_at.isoformat(),
        },
    )


async def on_organization_decided(
    documents: DocumentStore, event: OrganizationApproved | OrganizationRejected, env: Envelope
) -> None:
    # its own collection: one writer per document, whatever the order the two consumer groups run in
    decision: OrganizationDecisionDocument = (
        {"status": "rejected", "rejection": event.reason}
        if isinstance(event, OrganizationRejected)
        else {"status": "approved", "rejection": None}
    )
    await documents.put(DECISIONS, event.organization_id, decision)


async def on_policy_changed(documents: DocumentStore, event: ModerationPolicyChanged, env: Envelope) -> None:
    current = await documents.get(POLICIES, event.department)
    if current is None or current["version"] < env.stream_version:
        policy: PolicyDocument = {"policy": event.policy, "version": env.stream_version}
        await documents.put(POLICIES, event.department, policy)


async def on_referent_event(
    documents: DocumentStore, event: ReferentAppointed | ReferentRevoked, env: Envelope
) -> None:
    current = await documents.get(REFERENTS, event.referent_id)
    if current is not None and current["version"] >= env.stream_version:
        return
    departments = event.departments if isinstance(event, ReferentAppointed) else []
    referent: ReferentDocument = {"departments": departments, "version": env.stream_version}
    await documents.put(REFERENTS, event.referent_id, referent)


async def on_mission_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    mission: dict[str, Any] = await documents.get(MISSIONS, env.stream_id) or {"id": env.stream_id, "version": 0}
    if mission["version"] >= env.stream_version:
        return
    if isinstance(event, CONTENT_EVENTS):
        content = event.content
        mission.update(
            organization_id=event.organization_id,
            content=content.model_dump(mode="json"),
            title=content.title,
            domain=content.domain,
            department=content.department,
            remote=content.remote,
            places=content.places,
            end_date=content.end_date.isoformat() if content.end_date else None,
        )
    mission["status"] = mission_status_after(event, mission.get("status"))
    match event:
        case MissionModerated(decision="refused" | "changes_requested"):
            mission["review_comment"] = event.comment or event.reason
        case MissionPublished() | MissionReopened() | MissionPlacesChanged():
            mission["free_places"] = event.free_places
        case MissionFilled():
            mission["free_places"] = 0
        case MissionCancelled() | MissionUnpublished():
            mission["status_reason"] = event.reason
        case MissionEdited():
            pass
    mission["version"] = env.stream_version
    mission["updated_at"] = env.occurred_at.isoformat()
    await documents.put(MISSIONS, env.stream_id, mission)


async def on_application_event(documents: DocumentStore, event: ApplicationEvent, env: Envelope) -> None:
    """Which applications hold a place: accepted and not withdrawn, cancelled or refused since."""
    current = await documents.get(PLACES, event.application_id)
    if current is not None and current["version"] >= env.stream_version:
        return
    await documents.put(
        PLACES,
        event.application_id,
        {
            "mission_id": event.mission_id,
            "accepted": isinstance(event, ApplicationAccepted),
            "version": env.stream_version,
        },
    )


async def accepted_count(documents: DocumentStore, mission_id: str) -> int:
    return await documents.count(PLACES, {"mission_id": mission_id, "accepted": True})
