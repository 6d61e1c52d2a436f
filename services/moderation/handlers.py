"""Moderation application layer: referents, policies, decisions and the territory dashboard."""

from collections import Counter
from datetime import UTC, datetime

from services.moderation import domain
from services.moderation.projections import MISSIONS, ORGANIZATIONS, POLICIES, QUEUE, REFERENTS, VOLUNTEERS
from shared.events import Actor, Event, MissionChangesRequested, MissionRefused, MissionValidated
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason, department_stream
from shared.events.vocabulary import DOMAINS, MissionContent, ModerationPolicy
from shared.runtime.app import ServiceContext
from shared.runtime.ports import ConcurrencyError
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events, load_stream

DECISIONS = (MissionValidated, MissionRefused, MissionChangesRequested)


class ModerationHandlers:
    def __init__(self, ctx: ServiceContext) -> None:
        self.store, self.documents = ctx.store, ctx.documents

    # ---- admin ----

    async def appoint(self, referent_id: str, departments: list[str], actor: Actor) -> None:
        events, version = await load_stream(self.store, referent_id)
        referent = domain.Referent.replay(referent_id, events)
        await append_events(
            self.store, referent_id, version, domain.appoint_referent(referent, departments), actor=actor
        )

    async def revoke(self, referent_id: str, actor: Actor) -> None:
        events, version = await load_stream(self.store, referent_id)
        referent = domain.Referent.replay(referent_id, events)
        await append_events(self.store, referent_id, version, domain.revoke_referent(referent), actor=actor)

    async def change_policy(self, department: str, policy: ModerationPolicy, actor: Actor) -> None:
        stream = department_stream(department)
        events, version = await load_stream(self.store, stream)
        current = events[-1].policy if events else "pre"
        await append_events(self.store, stream, version, domain.change_policy(department, current, policy), actor=actor)

    async def policy(self, department: str) -> ModerationPolicy:
        found = await self.documents.get(POLICIES, department)
        return found["policy"] if found else "pre"

    # ---- referents ----

    async def departments_of(self, actor: Actor) -> tuple[str, ...] | None:
        """The departments a referent acts on; None for an admin (everywhere); 403 for anyone else."""
        if actor.role == "admin":
            return None
        if actor.role == "referent":
            events, _ = await load_stream(self.store, actor.id)
            departments = domain.Referent.replay(actor.id, events).departments
            if departments:
                return departments
        raise Problem(403, "forbidden", "Seuls les référents et les administrateurs modèrent.")

    async def require_department(self, actor: Actor, department: str) -> None:
        departments = await self.departments_of(actor)
        if departments is not None and department not in departments:
            raise domain.OUTSIDE_DEPARTMENTS

    async def queue(self, department: str, actor: Actor, now: datetime | None = None) -> list[dict]:
        await self.require_department(actor, department)
        now = now or datetime.now(UTC)
        entries = await self.documents.find(
            QUEUE, {"department": department, "pending": True}, sort=[("submitted_at", 1)], limit=1000
        )
        queue = []
        for e in entries:
            item = {
                "id": e["id"],
                "kind": e["kind"],
                "title": e["title"],
                "domain": e.get("domain"),
                "submitted_at": e["submitted_at"],
                "age_hours": round((now - datetime.fromisoformat(e["submitted_at"])).total_seconds() / 3600, 1),
            }
            if e["kind"] == "organization":
                item["possible_duplicates"] = await self.possible_duplicates(e["id"])
            queue.append(item)
        return queue

    async def possible_duplicates(self, organization_id: str) -> list[dict]:
        """Organisations registered with the same SIRET, the same RNA, or the same name in the department,
        whatever their department or status, for the referent to check before deciding."""
        organization = await self.documents.get(ORGANIZATIONS, organization_id)
        if organization is None:
            return []
        lookups = [{number: organization[number]} for number in ("siret", "rna") if organization.get(number)]
        if organization.get("name_key"):
            lookups.append({"department": organization["department"], "name_key": organization["name_key"]})
        candidates = {o["id"]: o for where in lookups for o in await self.documents.find(ORGANIZATIONS, where)}
        found = []
        for other in sorted(candidates.values(), key=lambda o: o["id"]):
            if reasons := domain.duplicate_reasons(organization, other):
                found.append(
                    {
                        "id": other["id"],
                        "name": other.get("name"),
                        "department": other.get("department"),
                        "status": other.get("status", "pending"),
                        "matched_on": reasons,
                    }
                )
        return found

    async def decide_mission(
        self,
        mission_id: str,
        decision: domain.MissionDecision,
        reason: MissionRefusalReason | None,
        comment: str | None,
        actor: Actor,
    ) -> None:
        departments = await self.departments_of(actor)
        entry = await self.documents.get(QUEUE, mission_id)
        awaiting = None
        if entry is not None and entry.get("kind") == "mission" and entry.get("submissions"):
            awaiting = domain.AwaitingReview(
                entry["organization_id"], entry["department"], MissionContent(**entry["content"]), entry["submissions"]
            )
        events, version = await load_stream(self.store, mission_id)
        decisions = sum(isinstance(e, DECISIONS) for e in events)
        new = domain.decide_mission(mission_id, decisions, awaiting, departments, decision, reason, comment)
        try:
            await append_events(self.store, mission_id, version, new, actor=actor)
        except ConcurrencyError:  # another referent decided at the same moment
            raise domain.ALREADY_DECIDED from None

    async def decide_organization(
        self,
        organization_id: str,
        decision: domain.OrganizationDecision,
        reason: OrganizationRejectionReason | None,
        comment: str | None,
        actor: Actor,
    ) -> None:
        departments = await self.departments_of(actor)
        entry = await self.documents.get(QUEUE, organization_id)  # what the referent saw
        department = entry["department"] if entry and entry["kind"] == "organization" else None
        events, version = await load_stream(self.store, organization_id)
        new: list[Event] = domain.decide_organization(
            organization_id,
            bool(events),
            department,
            departments,
            decision,
            reason,
            comment,
        )
        try:
            await append_events(self.store, organization_id, version, new, actor=actor)
        except ConcurrencyError:
            raise domain.ALREADY_DECIDED from None

    # ---- the territory ----

    async def dashboard(self, department: str | None, now: datetime | None = None) -> dict:
        """Figures of one department, or national ones (department None)."""
        now = now or datetime.now(UTC)
        where = {"department": department} if department else {}
        missions = await self.documents.find(MISSIONS, where)
        by_status = Counter(m.get("status", "unknown") for m in missions)
        online = [m for m in missions if m.get("status") in ("published", "filled")]
        offered = sum(m.get("places", 0) for m in online)
        free = sum(m.get("free_places", 0) for m in online)
        open_missions = sum(1 for m in online if m.get("free_places", 0) > 0)
        waiting = await self.documents.find(
            QUEUE, {**where, "pending": True, "kind": "mission"}, sort=[("submitted_at", 1)], limit=1
        )
        volunteers = await self.documents.count(VOLUNTEERS, where)
        return {
            "department": department,
            "missions_by_status": dict(sorted(by_status.items())),
            "online_missions_by_domain": {d: sum(1 for m in online if m.get("domain") == d) for d in DOMAINS},
            "places": {"offered": offered, "filled": offered - free, "free": free},
            "pending_moderation": {
                "missions": await self.documents.count(QUEUE, {**where, "pending": True, "kind": "mission"}),
                "oldest_age_hours": round(
                    (now - datetime.fromisoformat(waiting[0]["submitted_at"])).total_seconds() / 3600, 1
                )
                if waiting
                else None,
            },
            "organizations_pending": await self.documents.count(ORGANIZATIONS, {**where, "status": "pending"}),
            "volunteers": volunteers,
            "open_missions": open_missions,
            # the seed's indicator: 3,400 volunteers for 100 missions in the Morbihan, 35 to 1
            "volunteers_per_open_mission": round(volunteers / open_missions, 1) if open_missions else None,
        }

    async def referent(self, referent_id: str) -> dict:
        found = await self.documents.get(REFERENTS, referent_id)
        if not found or not found.get("departments"):
            raise Problem(404, "referent_not_found", "Cette personne n’est pas référente.")
        return {"id": referent_id, "departments": found["departments"]}
