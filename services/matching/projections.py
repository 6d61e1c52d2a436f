"""Read models of the matching service, and the in-memory index rebuilt from them.

The consumers write documents (missions, volunteers' public profiles, applications, managers,
referents), each stamped with `updated`. Every process serving queries holds a `MatchingIndex`
that loads the documents at start and then follows the `updated` stamps: replicas see what the
one consumer group wrote, and a restart rebuilds the index from the store.
"""

import asyncio
import gc
import time
from datetime import date
from typing import Any

from services.matching.domain import Grid, MissionSpot, VolunteerSpot, folded
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
    MissionPlacesChanged,
    MissionPublished,
    MissionReopened,
    MissionUnpublished,
    OrganizationRegistered,
    ReferentAppointed,
    ReferentRevoked,
    VolunteerErased,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    VolunteerWaitlisted,
)
from shared.events.volunteers import RosterEvent
from shared.geo import postal_area
from shared.runtime.ports import DocumentStore
from shared.runtime.projections import fresh_document

MISSIONS, VOLUNTEERS, APPLICATIONS = "missions", "volunteers", "applications"
ORGANIZATIONS, REFERENTS = "organizations", "referents"
MISSION_EVENTS = (
    MissionPublished,
    MissionFilled,
    MissionReopened,
    MissionPlacesChanged,
    MissionClosed,
    MissionCancelled,
    MissionUnpublished,
)
VOLUNTEER_EVENTS = (VolunteerRegistered, VolunteerProfileUpdated, VolunteerErased)
APPLICATION_STATUS: dict[type[Event], str] = {
    ApplicationReceived: "pending",
    ApplicationAccepted: "accepted",
    ApplicationRefused: "refused",
    ApplicationWithdrawn: "withdrawn",
    ApplicationCancelled: "cancelled",
    VolunteerWaitlisted: "waitlisted",
}
PROFILE_FIELDS = ("domains", "availability", "mode", "max_distance_km", "onsite_restricted", "visible_to_organizations")


async def setup(documents: DocumentStore) -> None:
    for collection in (MISSIONS, VOLUNTEERS, APPLICATIONS):
        await documents.ensure_index(collection, ["updated"])


def stamp() -> int:
    return time.time_ns()


async def on_mission_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, MISSIONS, env.stream_id, env)
    if doc is None:
        return
    match event:
        case MissionPublished(content=content):
            place = content.place
            doc |= {
                "organization_id": event.organization_id,
                "live": True,
                "title": content.title,
                "search_text": folded(f"{content.title} {content.description} {place.commune if place else ''}"),
                "domain": content.domain,
                "remote": content.remote,
                "department": content.department,
                "commune": place.commune if place else None,
                "latitude": place.latitude if place else None,
                "longitude": place.longitude if place else None,
                "free_places": event.free_places,
                "start_date": content.start_date.isoformat() if content.start_date else None,
                "end_date": content.end_date.isoformat() if content.end_date else None,
                "open_to_minors": content.open_to_minors,
                "published_on": doc.get("published_on") or env.occurred_at.date().isoformat(),
            }
        case MissionReopened():
            doc |= {"live": True, "free_places": event.free_places}
        case MissionPlacesChanged():
            doc["free_places"] = event.free_places
        case MissionFilled():
            doc["free_places"] = 0
        case _:
            doc["live"] = False
    await documents.put(MISSIONS, env.stream_id, {**doc, "updated": stamp()})


async def on_volunteer_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, VOLUNTEERS, env.stream_id, env)
    if doc is None:
        return
    if isinstance(event, VolunteerErased):
        doc = {"id": doc["id"], "version": doc["version"], "erased": True}
    else:
        changes = {k: v for k, v in event.model_dump(mode="json", include={*PROFILE_FIELDS, "postal_code"}).items()}
        changes = {k: v for k, v in changes.items() if v is not None}
        if "postal_code" in changes:
            main = postal_area(changes["postal_code"]).main_commune  # once: each property of the area looks for it
            changes |= {"department": main.department, "latitude": main.latitude, "longitude": main.longitude}
        assert isinstance(event, VolunteerRegistered | VolunteerProfileUpdated)
        if event.age_bracket is not None:
            changes["minor"] = event.age_bracket == "16-17"
        if isinstance(event, VolunteerRegistered):
            changes["registered_on"] = env.occurred_at.date().isoformat()
        doc |= changes
    await documents.put(VOLUNTEERS, env.stream_id, {**doc, "updated": stamp()})


async def on_application_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    """One document per (mission, volunteer); the roster stream's version guards redeliveries."""
    assert isinstance(event, RosterEvent)
    doc = await fresh_document(documents, APPLICATIONS, f"{event.mission_id}:{event.volunteer_id}", env)
    if doc is None:
        return
    doc |= {
        "mission_id": event.mission_id,
        "volunteer_id": event.volunteer_id,
        "status": APPLICATION_STATUS[type(event)],
    }
    if isinstance(event, ApplicationReceived | VolunteerWaitlisted):
        doc["received_on"] = env.occurred_at.date().isoformat()
    await documents.put(APPLICATIONS, doc["id"], {**doc, "updated": stamp()})


async def on_organization_registered(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
    await documents.put(ORGANIZATIONS, event.organization_id, {"manager_ids": event.manager_ids})


async def manager_ids(documents: DocumentStore, organization_id: str) -> list[str]:
    """The organisation's managers (none while its registration is not projected)."""
    found = await documents.get(ORGANIZATIONS, organization_id)
    return list(found["manager_ids"]) if found else []


async def on_referent_event(documents: DocumentStore, event: Event, env: Envelope) -> None:
    doc = await fresh_document(documents, REFERENTS, env.stream_id, env)
    if doc is None:
        return
    assert isinstance(event, ReferentAppointed | ReferentRevoked)
    departments = event.departments if isinstance(event, ReferentAppointed) else []
    await documents.put(REFERENTS, env.stream_id, {**doc, "departments": departments})


async def appointed_departments(documents: DocumentStore, referent_id: str) -> list[str]:
    """The departments a referent is appointed to (none once revoked)."""
    found = await documents.get(REFERENTS, referent_id)
    return list(found["departments"]) if found else []


# ---- the in-memory index ----

# documents stamped this long before the last refresh are read again: a write may commit after a later stamp
OVERLAP_NS = 5_000_000_000


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


class MatchingIndex:
    """Missions with free places and visible volunteers, in grids by location, with per-department sets."""

    def __init__(self) -> None:
        self.missions: dict[str, MissionSpot] = {}
        self.mission_grid: Grid[MissionSpot] = Grid()
        self.remote_missions: dict[str, MissionSpot] = {}
        self.volunteers: dict[str, VolunteerSpot] = {}
        self.volunteer_grid: Grid[VolunteerSpot] = Grid()
        self.department_volunteers: dict[str, set[str]] = {}
        self.department_missions: dict[str, set[str]] = {}
        self.applied: dict[str, set[str]] = {}
        self.accepted: dict[str, set[str]] = {}
        self.last_candidate: dict[str, date] = {}
        self.watermark = 0
        self.refreshed_at = float("-inf")
        self._refreshing = asyncio.Lock()

    async def follow(self, documents: DocumentStore, max_age_s: float) -> None:
        """Refresh unless it was done less than `max_age_s` ago; concurrent callers share one refresh."""
        if time.monotonic() - self.refreshed_at < max_age_s:
            return
        async with self._refreshing:
            if time.monotonic() - self.refreshed_at >= max_age_s:
                await self.refresh(documents)

    async def refresh(self, documents: DocumentStore) -> int:
        """Apply every document changed since the last refresh (all of them the first time); returns how many."""
        since = {"updated": {"$gte": self.watermark - OVERLAP_NS}} if self.watermark else None
        started = stamp()
        # a rebuild makes millions of long-lived objects: the cyclic collector would rescan them again and again
        gc.disable()
        try:
            applications = await documents.find(APPLICATIONS, since)
            for doc in applications:
                self.apply_application(doc)
            volunteers = await documents.find(VOLUNTEERS, since)
            for doc in volunteers:
                self.apply_volunteer(doc)
            missions = await documents.find(MISSIONS, since)
            for doc in missions:
                self.apply_mission(doc)
        finally:
            gc.enable()
        self.watermark, self.refreshed_at = started, time.monotonic()
        return len(applications) + len(volunteers) + len(missions)

    def apply_mission(self, doc: dict[str, Any]) -> None:
        mission_id = doc["id"]
        self._drop_mission(mission_id)
        if not doc.get("live") or "domain" not in doc:
            return
        spot = MissionSpot(
            mission_id=mission_id,
            organization_id=doc["organization_id"],
            title=doc["title"],
            domain=doc["domain"],
            remote=doc["remote"],
            department=doc["department"],
            latitude=doc.get("latitude"),
            longitude=doc.get("longitude"),
            free_places=doc["free_places"],
            start_date=_day(doc.get("start_date")),
            end_date=_day(doc.get("end_date")),
            open_to_minors=doc.get("open_to_minors", False),
            published_on=date.fromisoformat(doc["published_on"]),
            commune=doc.get("commune"),
            search_text=doc.get("search_text", ""),
            last_candidate_on=self.last_candidate.get(mission_id),
        )
        self.missions[mission_id] = spot
        self.department_missions.setdefault(spot.department, set()).add(mission_id)
        if spot.located():
            assert spot.latitude is not None and spot.longitude is not None
            self.mission_grid.put(mission_id, spot.latitude, spot.longitude, spot)
        elif spot.remote:
            self.remote_missions[mission_id] = spot

    def _drop_mission(self, mission_id: str) -> None:
        spot = self.missions.pop(mission_id, None)
        if spot is not None:
            self.department_missions.get(spot.department, set()).discard(mission_id)
            self.mission_grid.remove(mission_id)
            self.remote_missions.pop(mission_id, None)

    def apply_volunteer(self, doc: dict[str, Any]) -> None:
        volunteer_id = doc["id"]
        old = self.volunteers.pop(volunteer_id, None)
        if old is not None:
            self.department_volunteers.get(old.department, set()).discard(volunteer_id)
            self.volunteer_grid.remove(volunteer_id)
        if doc.get("erased") or "department" not in doc:
            return
        spot = VolunteerSpot(
            volunteer_id=volunteer_id,
            department=doc["department"],
            latitude=doc.get("latitude"),
            longitude=doc.get("longitude"),
            domains=frozenset(doc.get("domains", ())),
            availability=frozenset(doc.get("availability", ())),
            mode=doc.get("mode", "both"),
            max_distance_km=doc.get("max_distance_km", 20),
            onsite_restricted=doc.get("onsite_restricted", False),
            minor=doc.get("minor", False),
            visible=doc.get("visible_to_organizations", True),
            registered_on=date.fromisoformat(doc["registered_on"]),
            applied=self.applied.setdefault(volunteer_id, set()),
            accepted=self.accepted.setdefault(volunteer_id, set()),
        )
        self.volunteers[volunteer_id] = spot
        self.department_volunteers.setdefault(spot.department, set()).add(volunteer_id)
        if spot.latitude is not None and spot.longitude is not None:
            self.volunteer_grid.put(volunteer_id, spot.latitude, spot.longitude, spot)

    def apply_application(self, doc: dict[str, Any]) -> None:
        mission_id, volunteer_id, status = doc["mission_id"], doc["volunteer_id"], doc["status"]
        self.applied.setdefault(volunteer_id, set()).add(mission_id)
        accepted = self.accepted.setdefault(volunteer_id, set())
        if status == "accepted":
            accepted.add(mission_id)
        else:
            accepted.discard(mission_id)
        received = _day(doc.get("received_on"))
        if received and received > self.last_candidate.get(mission_id, date.min):
            self.last_candidate[mission_id] = received
            if mission_id in self.missions:
                self.missions[mission_id].last_candidate_on = received
