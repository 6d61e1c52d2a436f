"""Missions application layer: load the aggregate, run the command, append with optimistic concurrency."""

from datetime import UTC, date, datetime
from functools import partial

from services.missions import domain
from services.missions.projections import DECISIONS, MISSIONS, ORGANIZATIONS, POLICIES, accepted_count
from shared.events import Actor, Envelope, Event, OrganizationRegistered, new_id
from shared.events.vocabulary import MissionContent, ModerationPolicy
from shared.runtime.app import ServiceContext
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events, decide_and_append, load_stream

NOT_FOUND_ORGANIZATION = Problem(404, "organization_not_found", "Cette organisation est introuvable.")
NOT_FOUND_MISSION = Problem(404, "mission_not_found", "Cette mission est introuvable.")


def now() -> datetime:
    return datetime.now(UTC)


class MissionsHandlers:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store, self.documents = ctx.store, ctx.documents

    # ---- organisations ----

    async def register_organization(self, registration: OrganizationRegistered, actor: Actor) -> str:
        events = domain.register_organization(registration)
        await append_events(self.store, registration.organization_id, 0, events, actor=actor)
        return registration.organization_id

    async def organization(self, organization_id: str) -> dict:
        """The organisation with its moderation status (pending until a referent decides)."""
        found = await self.documents.get(ORGANIZATIONS, organization_id)
        if found is None:
            # just registered, not projected yet: its own stream is the truth (read your writes)
            events, _ = await load_stream(self.store, organization_id)
            registered = next((e for e in events if isinstance(e, OrganizationRegistered)), None)
            if registered is None:
                raise NOT_FOUND_ORGANIZATION
            found = {**registered.model_dump(mode="json"), "id": organization_id}
        decision = await self.documents.get(DECISIONS, organization_id) or {"status": "pending"}
        return {**found, **decision}

    async def managed_organization(self, organization_id: str, actor: Actor) -> dict:
        """The organisation, if `actor` is one of its managers (or an admin); 404/403 otherwise."""
        organization = await self.organization(organization_id)
        if actor.role != "admin" and actor.id not in organization["manager_ids"]:
            raise Problem(403, "not_your_organization", "Vous ne gérez pas cette organisation.")
        return organization

    async def organization_approved(self, organization_id: str) -> bool:
        decision = await self.documents.get(DECISIONS, organization_id)
        return bool(decision and decision["status"] == "approved")

    async def policy(self, department: str) -> ModerationPolicy:
        found = await self.documents.get(POLICIES, department)
        return found["policy"] if found else "pre"

    # ---- missions, on behalf of a manager ----

    async def draft(self, organization_id: str, content: MissionContent, actor: Actor) -> str:
        await self.managed_organization(organization_id, actor)
        mission_id = new_id()
        await self._decide(mission_id, lambda m: domain.draft_mission(m, organization_id, content, now()), actor)
        return mission_id

    async def managed_mission(self, mission_id: str, actor: Actor) -> domain.Mission:
        mission, _ = await self._load(mission_id)
        if not mission.exists:
            raise NOT_FOUND_MISSION
        await self.managed_organization(mission.organization_id, actor)
        return mission

    async def edit(self, mission_id: str, content: MissionContent, actor: Actor) -> None:
        await self.managed_mission(mission_id, actor)
        await self._decide(mission_id, lambda m: domain.edit_mission(m, content, now()), actor)

    async def submit(self, mission_id: str, actor: Actor) -> None:
        mission = await self.managed_mission(mission_id, actor)
        assert mission.content is not None
        policy = await self.policy(mission.content.department)
        approved = await self.organization_approved(mission.organization_id)
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
        self, mission_id, decide, actor: Actor | None = None, *, cause: Envelope | None = None, attempts: int = 3
    ) -> list[Event]:
        """Load, decide, append; a system reaction retries on a concurrent write, a person gets a 409."""

        async def decided(history: list[Event]) -> list[Event]:
            return decide(domain.Mission.replay(mission_id, history))

        return await decide_and_append(
            self.store, mission_id, decided, actor=actor, cause=cause, attempts=1 if actor else attempts
        )
