"""Events of the missions service: organisations and the mission lifecycle."""

from typing import Literal

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Department, MissionContent, ModerationPolicy, OrganizationKind, PostalCode


class OrganizationEvent(Event):
    topic = "missions.organization"
    organization_id: str

    def stream_id(self) -> str:
        return self.organization_id


@catalog.register
class OrganizationRegistered(OrganizationEvent):
    name: str
    kind: OrganizationKind
    establishment_type: str | None = None
    siret: str | None = None
    rna: str | None = None
    postal_code: PostalCode
    department: Department
    commune: str | None = None
    description: str | None = None
    manager_ids: list[str]


class MissionEvent(Event):
    topic = "missions.mission"
    mission_id: str

    def stream_id(self) -> str:
        return self.mission_id


@catalog.register
class MissionDrafted(MissionEvent):
    organization_id: str
    content: MissionContent


@catalog.register
class MissionEdited(MissionEvent):
    organization_id: str
    content: MissionContent


@catalog.register
class MissionSubmitted(MissionEvent):
    organization_id: str
    content: MissionContent
    moderation: ModerationPolicy | None = None  # the department's policy when submitted


@catalog.register
class MissionModerated(MissionEvent):
    """The missions service applied a referent's decision (the moderation event is its causation)."""

    organization_id: str
    decision: Literal["validated", "refused", "changes_requested"]
    reason: str | None = None
    comment: str | None = None


@catalog.register
class MissionPublished(MissionEvent):
    organization_id: str
    content: MissionContent
    free_places: int


@catalog.register
class MissionUnpublished(MissionEvent):
    organization_id: str
    department: Department
    reason: str


@catalog.register
class MissionFilled(MissionEvent):
    organization_id: str


@catalog.register
class MissionReopened(MissionEvent):
    organization_id: str
    free_places: int


@catalog.register
class MissionPlacesChanged(MissionEvent):
    """A published mission's free places changed (an acceptance, a withdrawal, a cancellation) without
    filling it: MissionFilled and MissionReopened say the other changes of free places."""

    organization_id: str
    free_places: int


@catalog.register
class MissionClosed(MissionEvent):
    organization_id: str
    reason: Literal["ended", "closed_by_organization"]


@catalog.register
class MissionCancelled(MissionEvent):
    organization_id: str
    reason: str


MissionStatus = Literal[
    "draft", "submitted", "changes_requested", "refused", "validated", "published", "filled", "closed", "cancelled"
]


def mission_status_after(event: Event, status: MissionStatus | None) -> MissionStatus | None:
    """The status a mission has after one of its events, for consumers that follow the lifecycle.

    A validation keeps a post-moderated mission online; a refusal or a request for changes takes the
    status of the decision; edits and unpublishing (always preceded by a decision) change nothing.
    """
    match event:
        case MissionDrafted():
            return "draft"
        case MissionSubmitted():
            return "submitted"
        case MissionModerated(decision="validated"):
            return status if status in ("published", "filled") else "validated"
        case MissionModerated():
            return event.decision
        case MissionPublished() | MissionReopened():
            return "published"
        case MissionFilled():
            return "filled"
        case MissionClosed():
            return "closed"
        case MissionCancelled():
            return "cancelled"
    return status
