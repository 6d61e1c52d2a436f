"""Missions application layer: check who acts, load the aggregate, run the command, append with optimistic
concurrency; and the views the routes answer."""

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from services.missions import domain
from services.missions.projections import (
    DECISIONS,
    MISSIONS,
    ORGANIZATIONS,
    POLICIES,
    REFERENTS,
    accepted_count,
)
from shared import access, geo
from shared.contracts.missions import DepartmentModeration, DraftedMission, MissionInput, MissionView, OrganizationView
from shared.contracts.organizations import OrganizationProfile, RegisteredOrganization
from shared.errors import NotFound
from shared.events import Actor, Envelope, Event, OrganizationRegistered, new_id
from shared.events.missions import MissionStatus
from shared.events.vocabulary import MissionContent, ModerationPolicy, Place
from shared.runtime.app import ServiceContext
from shared.runtime.streams import append_events, decide_and_append, load_stream

ORGANIZATION_NOT_FOUND = NotFound("organization_not_found", "Cette organisation est introuvable.")
MISSION_NOT_FOUND = NotFound("mission_not_found", "Cette mission est introuvable.")
PUBLIC: frozenset[MissionStatus] = frozenset({"published", "filled"})

Decide = Callable[[domain.Mission], list[Event]]


def now() -> datetime:
    return datetime.now(UTC)


def locate(postal_code: str, commune: str | None, field: str) -> geo.Commune:
    return geo.postal_area_or_refusal(postal_code, field).commune(commune)


class MissionsHandlers:
    """Built once at the service's start (`ctx.component(MissionsHandlers)`)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.store, self.documents = ctx.store, ctx.documents

    # ---- organisations ----

    async def register_organization(self, profile: OrganizationProfile, actor: Actor) -> RegisteredOrganization:
        """A manager registers an organisation in the department of its postal code; pending until decided."""
        access.require_role(actor, "manager")
        commune = locate(profile.postal_code, profile.commune, "postal_code")
        registration = OrganizationRegistered(
            organization_id=new_id(),
            **profile.model_dump(exclude={"postal_code", "commune"}),
            postal_code=commune.postal_code,
            department=commune.department,
            commune=commune.name,
            manager_ids=[actor.id],
        )
        events = domain.register_organization(registration)
        await append_events(self.store, registration.organization_id, 0, events, actor=actor)
        return RegisteredOrganization(
            organization_id=registration.organization_id, department=commune.department, status="pending"
        )

    async def organization(self, organization_id: str) -> OrganizationView:
        """The organisation with its moderation status (pending until a referent decides)."""
        found: dict[str, Any] | None = await self.documents.get(ORGANIZATIONS, organization_id)
        if found is None:
            # just registered, not projected yet: its own stream is the truth (read your writes)
            events, _ = await load_stream(self.store, organization_id)
            registered = next((e for e in events if isinstance(e, OrganizationRegistered)), None)
            if registered is None:
                raise ORGANIZATION_NOT_FOUND()
            found = {**registered.model_dump(mode="json", exclude={"organization_id"}), "id": organization_id}
        decision = await self.documents.get(DECISIONS, organization_id) or {"status": "pending"}
        return OrganizationView.model_validate({**found, **decision})

    async def readable_organization(self, organization_id: str, actor: Actor) -> OrganizationView:
        """The organisation, for its managers, the referents of its department and admins."""
        organization = await self.organization(organization_id)
        access.require_manager_or_referent(
            actor, organization.manager_ids, organization.department, await self.appointed(actor)
        )
        return organization

    async def managed_organization(self, organization_id: str, actor: Actor) -> OrganizationView:
        """The organisation, if `actor` is one of its managers (or an admin)."""
        organization = await self.organization(organization_id)
        access.require_manager(actor, organization.manager_ids)
        return organization

    async def organization_missions(
        self, organization_id: str, status: MissionStatus | None, actor: Actor
    ) -> list[MissionView]:
        organization = await self.managed_organization(organization_id, actor)
        where = {"organization_id": organization.id} | ({"status": status} if status else {})
        found = await self.documents.find(MISSIONS, where, sort=[("updated_at", -1)], limit=500)
        return [MissionView.model_validate(doc) for doc in found]

    async def organization_approved(self, organization_id: str) -> bool:
        decision = await self.documents.get(DECISIONS, organization_id)
        return bool(decision and decision["status"] == "approved")

    async def appointed(self, actor: Actor) -> list[str]:
        """The departments a referent is appointed to, as this service knows them (none for other roles)."""
        if actor.role != "referent":
            return []
        referent = await self.documents.get(REFERENTS, actor.id)
        return list(referent["departments"]) if referent else []

    async def policy(self, department: str) -> ModerationPolicy:
        found = await self.documents.get(POLICIES, department)
        return found["policy"] if found else "pre"

    async def department_moderation(self, department: str) -> DepartmentModeration:
        """Which moderation a mission of this department goes through: before (pre) or after (post) publication."""
        return DepartmentModeration(department=department, policy=await self.policy(department))

    # ---- missions, on behalf of a manager ----

    async def mission(self, mission_id: str, actor: Actor | None) -> MissionView:
        """The public page of a published mission; before that, only its managers, referents and admins,
        and to anyone else it does not exist."""
        found = await self.documents.get(MISSIONS, mission_id)
        if found is None:
            raise MISSION_NOT_FOUND()
        mission = MissionView.model_validate(found)
        organization = await self.organization(mission.organization_id)
        mission.organization_name = organization.name
        if mission.status in PUBLIC:
            return mission
        if actor is None or not (
            access.manages(actor, organization.manager_ids)
            or access.refers(actor, mission.department, await self.appointed(actor))
        ):
            raise MISSION_NOT_FOUND()
        return mission

    async def draft(self, organization_id: str, body: MissionInput, actor: Actor) -> DraftedMission:
        access.require_role(actor, "manager", "admin")
        organization = await self.managed_organization(organization_id, actor)
        content = content_of(body, organization)
        mission_id = new_id()
        await self._decide(mission_id, lambda m: domain.draft_mission(m, organization_id, content, now()), actor)
        return DraftedMission(mission_id=mission_id, status="draft")

    async def managed_mission(self, mission_id: str, actor: Actor) -> tuple[domain.Mission, OrganizationView]:
        """The mission and its organisation, if `actor` manages it."""
        mission, _ = await self._load(mission_id)
        if not mission.exists:
            raise MISSION_NOT_FOUND()
        return mission, await self.managed_organization(mission.organization_id, actor)

    async def edit(self, mission_id: str, body: MissionInput, actor: Actor) -> None:
        _, organization = await self.managed_mission(mission_id, actor)
        content = content_of(body, organization)
        await self._decide(mission_id, lambda m: domain.edit_mission(m, content, now()), actor)

    async def submit(self, mission_id: str, actor: Actor) -> None:
        mission, organization = await self.managed_mission(mission_id, actor)
        department = mission.content.department if mission.content else organization.department
        policy = await self.policy(department)
        approved = organization.status == "approved"
        accepted = await accepted_count(self.documents, mission_id)  # kept from an earlier publication
        await self._decide(mission_id, lambda m: domain.submit_mission(m, policy, approved, now(), accepted), actor)

    async def cancel(self, mission_id: str, reason: str, actor: Actor) -> None:
        await self.managed_mission(mission_id, actor)
        await self._decide(mission_id, lambda m: domain.cancel_mission(m, reason), actor)

    async def close(self, mission_id: str, actor: Actor) -> None:
        await self.managed_mission(mission_id, actor)
        await self._decide(mission_id, domain.close_mission, actor)

    # ---- reactions to other services' events ----

    async def apply_decision(
        self, mission_id: str, decision: domain.Decision, reason: str | None, comment: str | None, cause: Envelope
    ) -> None:
        mission, _ = await self._load(mission_id)
        approved = await self.organization_approved(mission.organization_id)
        accepted = await accepted_count(self.documents, mission_id)
        await self._decide(
            mission_id,
            lambda m: domain.apply_decision(m, decision, reason, comment, approved, now(), accepted),
            cause=cause,
        )

    async def publish_if_approved(self, mission_id: str, cause: Envelope) -> None:
        """Called once the read model shows a mission cleared by moderation, to catch an approval of its
        organisation that came meanwhile: the approval handler writes the approval then reads the
        missions, this reads the approval after the mission was written, so one of the two publishes."""
        mission, _ = await self._load(mission_id)
        if await self.organization_approved(mission.organization_id):
            accepted = await accepted_count(self.documents, mission_id)
            await self._decide(mission_id, lambda m: domain.publish_if_ready(m, True, now(), accepted), cause=cause)

    async def publish_missions_of(self, organization_id: str, cause: Envelope) -> None:
        # every mission not yet over: the read model may lag behind the event store, the aggregate decides
        ongoing = {
            "organization_id": organization_id,
            "status": {"$nin": ["published", "filled", "closed", "cancelled"]},
        }
        for doc in await self.documents.find(MISSIONS, ongoing):
            accepted = await accepted_count(self.documents, doc["id"])
            publish = partial(domain.publish_if_ready, organization_approved=True, now=now(), accepted=accepted)
            await self._decide(doc["id"], publish, cause=cause)

    async def update_capacity(self, mission_id: str, cause: Envelope) -> None:
        accepted = await accepted_count(self.documents, mission_id)
        await self._decide(mission_id, lambda m: domain.update_capacity(m, accepted), cause=cause)

    async def close_ended_missions(self, today: date) -> int:
        """The daily job: close missions whose end date is a month past. Returns how many it closed."""
        closed = 0
        cutoff = (today - domain.CLOSE_AFTER_END).isoformat()
        candidates = await self.documents.find(
            MISSIONS, {"status": {"$in": ["validated", "published", "filled"]}, "end_date": {"$lte": cutoff}}
        )
        for doc in candidates:
            closed += len(await self._decide(doc["id"], lambda m: domain.close_if_ended(m, today)))
        return closed

    # ---- plumbing ----

    async def _load(self, mission_id: str) -> tuple[domain.Mission, int]:
        events, version = await load_stream(self.store, mission_id)
        return domain.Mission.replay(mission_id, events), version

    async def _decide(
        self,
        mission_id: str,
        decide: Decide,
        actor: Actor | None = None,
        *,
        cause: Envelope | None = None,
        attempts: int = 3,
    ) -> list[Event]:
        """Load, decide, append; a system reaction retries on a concurrent write, a person gets a 409."""

        async def decided(history: list[Event]) -> list[Event]:
            return decide(domain.Mission.replay(mission_id, history))

        return await decide_and_append(
            self.store, mission_id, decided, actor=actor, cause=cause, attempts=1 if actor else attempts
        )


def content_of(body: MissionInput, organization: OrganizationView) -> MissionContent:
    """A remote mission belongs to its organisation's department; an on-site one to its place's."""
    place = None
    department = organization.department
    if not body.remote and body.place is not None:
        commune = locate(body.place.postal_code, body.place.commune, "place.postal_code")
        department = commune.department
        place = Place(
            address=body.place.address,
            postal_code=commune.postal_code,
            commune=commune.name,
            department=department,
            latitude=commune.latitude,
            longitude=commune.longitude,
        )
    return MissionContent(**body.model_dump(exclude={"place"}), department=department, place=place)
