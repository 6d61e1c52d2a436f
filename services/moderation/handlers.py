"""Moderation application layer: who may act where, referents, policies, decisions and the territory."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from services.moderation import domain
from services.moderation.projections import MISSIONS, ORGANIZATIONS, POLICIES, QUEUE, REFERENTS, VOLUNTEERS
from shared import access, geo
from shared.contracts.moderation import (
    Dashboard,
    DepartmentPolicy,
    MissionDecision,
    OrganizationDecision,
    PossibleDuplicate,
    QueueEntry,
    ReferentView,
)
from shared.errors import NotFound
from shared.events import (
    Actor,
    Event,
    MissionChangesRequested,
    MissionRefused,
    MissionValidated,
    ModerationPolicyChanged,
)
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason, department_stream
from shared.events.vocabulary import DOMAINS, MissionContent, ModerationPolicy
from shared.runtime.app import ServiceContext
from shared.runtime.ports import ConcurrencyError
from shared.runtime.streams import append_events, load_stream

DECISIONS = (MissionValidated, MissionRefused, MissionChangesRequested)
UNKNOWN_DEPARTMENT = NotFound("unknown_department", "Ce département n’existe pas.")
NOT_IN_QUEUE = NotFound("not_in_queue", "Cette demande n’est pas dans la file des référents.")
LISTED_AT_MOST = 5000  # a queue page reads at most this many items of one kind (a department's, in practice)
ItemKind = Literal["mission", "organization"]
QUEUE_STATES: dict[ItemKind, tuple[str, ...]] = {
    "mission": ("pending", "validated", "refused", "changes_requested"),
    "organization": ("pending", "approved", "rejected"),
}


@dataclass(frozen=True)
class Listing:
    """What a queue page asks for: one kind of item, filtered (empty: any)."""

    kind: ItemKind
    state: str = "pending"
    department: str = ""
    domain: str = ""
    text: str = ""
    waiting_days: int = 0  # submitted at least this many days ago
    newest_first: bool = False


def checked_department(department: str) -> str:
    """The department's code as the geography writes it (`2a` → `2A`)."""
    try:
        return geo.department(department).code
    except LookupError:
        raise UNKNOWN_DEPARTMENT() from None


def hours_since(moment: str, now: datetime) -> float:
    return round((now - datetime.fromisoformat(moment)).total_seconds() / 3600, 1)


class ModerationHandlers:
    """Built once at the service's start (`ctx.component(ModerationHandlers)`)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.store, self.documents = ctx.store, ctx.documents

    # ---- admin ----

    async def appoint(self, referent_id: str, departments: list[str], actor: Actor) -> None:
        access.require_role(actor, "admin")
        events, version = await load_stream(self.store, referent_id)
        referent = domain.Referent.replay(referent_id, events)
        await append_events(
            self.store, referent_id, version, domain.appoint_referent(referent, departments), actor=actor
        )

    async def revoke(self, referent_id: str, actor: Actor) -> None:
        access.require_role(actor, "admin")
        events, version = await load_stream(self.store, referent_id)
        referent = domain.Referent.replay(referent_id, events)
        await append_events(self.store, referent_id, version, domain.revoke_referent(referent), actor=actor)

    async def change_policy(self, department: str, policy: ModerationPolicy, actor: Actor) -> None:
        access.require_role(actor, "admin")
        department = checked_department(department)
        stream = department_stream(department)
        events, version = await load_stream(self.store, stream)
        changes = [e.policy for e in events if isinstance(e, ModerationPolicyChanged)]
        current: ModerationPolicy = changes[-1] if changes else "pre"
        await append_events(self.store, stream, version, domain.change_policy(department, current, policy), actor=actor)

    async def policy(self, department: str) -> DepartmentPolicy:
        department = checked_department(department)
        found = await self.documents.get(POLICIES, department)
        return DepartmentPolicy(department=department, policy=found["policy"] if found else "pre")

    async def published_first(self) -> list[str]:
        """The departments whose missions go online before a referent checks them (`post`); the others are `pre`."""
        return sorted(doc["id"] for doc in await self.documents.find(POLICIES, {"policy": "post"}))

    async def national_dashboard(self, actor: Actor) -> Dashboard:
        access.require_role(actor, "admin")
        return await self.dashboard(None)

    # ---- referents ----

    async def referent(self, referent_id: str, actor: Actor) -> ReferentView:
        """A referent's departments, for that referent and admins."""
        access.require_role(actor, "referent", "admin")
        if actor.role != "admin" and actor.id != referent_id:
            raise access.NOT_YOURS()
        found = await self.documents.get(REFERENTS, referent_id)
        if not found or not found.get("departments"):
            raise domain.REFERENT_NOT_FOUND()
        return ReferentView(id=referent_id, departments=found["departments"])

    async def referents(self, actor: Actor) -> list[ReferentView]:
        """Every referent appointed (a revoked one has no department left), for admins."""
        access.require_role(actor, "admin")
        found = await self.documents.find(REFERENTS, {})
        return sorted(
            (ReferentView(id=doc["id"], departments=doc["departments"]) for doc in found if doc.get("departments")),
            key=lambda referent: (referent.departments, referent.id),
        )

    async def appointed(self, actor: Actor) -> tuple[str, ...]:
        """The departments a referent is appointed to, from their own stream (none for other roles)."""
        if actor.role != "referent":
            return ()
        events, _ = await load_stream(self.store, actor.id)
        return domain.Referent.replay(actor.id, events).departments

    async def in_department(self, actor: Actor, department: str) -> str:
        """The department (its code), if `actor` is one of its referents or an admin."""
        access.require_role(actor, "referent", "admin")
        department = checked_department(department)
        access.require_referent(actor, department, await self.appointed(actor))
        return department

    async def queue(self, department: str, actor: Actor, now: datetime | None = None) -> list[QueueEntry]:
        department = await self.in_department(actor, department)
        now = now or datetime.now(UTC)
        entries = await self.documents.find(
            QUEUE, {"department": department, "pending": True}, sort=[("submitted_at", 1)], limit=1000
        )
        queue = []
        for e in entries:
            organization = e["kind"] == "organization"
            queue.append(
                QueueEntry(
                    id=e["id"],
                    kind=e["kind"],
                    title=e["title"],
                    domain=e.get("domain"),
                    submitted_at=e["submitted_at"],
                    age_hours=hours_since(e["submitted_at"], now),
                    possible_duplicates=await self.possible_duplicates(e["id"]) if organization else None,
                )
            )
        return queue

    async def possible_duplicates(self, organization_id: str) -> list[PossibleDuplicate]:
        """Organisations registered with the same SIRET, the same RNA, or the same name in the department,
        whatever their department or status, for the referent to check before deciding."""
        organization = await self.documents.get(ORGANIZATIONS, organization_id)
        if organization is None:
            return []
        lookups = [{number: organization[number]} for number in ("siret", "rna") if organization.get(number)]
        if organization.get("name_key"):
            lookups.append({"department": organization["department"], "name_key": organization["name_key"]})
        candidates = {o["id"]: o for where in lookups for o in await self.documents.find(ORGANIZATIONS, where)}
        return [
            PossibleDuplicate(
                id=other["id"],
                name=other.get("name"),
                department=other.get("department"),
                status=other.get("status", "pending"),
                matched_on=reasons,
            )
            for other in sorted(candidates.values(), key=lambda o: o["id"])
            if (reasons := domain.duplicate_reasons(organization, other))
        ]

    async def decide_mission(
        self,
        mission_id: str,
        decision: MissionDecision,
        reason: MissionRefusalReason | None,
        comment: str | None,
        actor: Actor,
    ) -> None:
        access.require_role(actor, "referent", "admin")
        entry = await self.documents.get(QUEUE, mission_id)
        if entry is None or entry.get("kind") != "mission" or not entry.get("submissions"):
            raise domain.MISSION_NOT_AWAITING()
        access.require_referent(actor, entry["department"], await self.appointed(actor))
        awaiting = domain.AwaitingReview(
            entry["organization_id"], entry["department"], MissionContent(**entry["content"]), entry["submissions"]
        )
        events, version = await load_stream(self.store, mission_id)
        decisions = sum(isinstance(e, DECISIONS) for e in events)
        new = domain.decide_mission(mission_id, decisions, awaiting, decision, reason, comment)
        await self._append_decision(mission_id, version, new, actor)

    async def decide_organization(
        self,
        organization_id: str,
        decision: OrganizationDecision,
        reason: OrganizationRejectionReason | None,
        comment: str | None,
        actor: Actor,
    ) -> None:
        access.require_role(actor, "referent", "admin")
        entry = await self.documents.get(QUEUE, organization_id)  # what the referent saw
        if entry is None or entry["kind"] != "organization":
            raise domain.ORGANIZATION_NOT_AWAITING()
        access.require_referent(actor, entry["department"], await self.appointed(actor))
        events, version = await load_stream(self.store, organization_id)
        new = domain.decide_organization(organization_id, bool(events), entry["department"], decision, reason, comment)
        await self._append_decision(organization_id, version, new, actor)

    async def _append_decision(self, stream_id: str, version: int, events: list[Event], actor: Actor) -> None:
        try:
            await append_events(self.store, stream_id, version, events, actor=actor)
        except ConcurrencyError:  # another referent decided at the same moment
            raise domain.ALREADY_DECIDED() from None

    # ---- the referents' pages: what they see, in their departments only ----

    async def scope(self, actor: Actor) -> tuple[str, ...] | None:
        """The departments `actor` may see and act in: a referent's own, None for an admin (all of them)."""
        access.require_role(actor, "referent", "admin")
        return None if actor.role == "admin" else await self.appointed(actor)

    async def listing(self, actor: Actor, wanted: Listing) -> list[dict[str, Any]]:
        """The queue's items of one kind in `actor`'s departments, filtered, oldest first (or newest)."""
        scope = await self.scope(actor)
        where: dict[str, Any] = {"kind": wanted.kind}
        if wanted.department:
            department = checked_department(wanted.department)
            access.require_referent(actor, department, scope or ())
            where["department"] = department
        elif scope is not None:
            where["department"] = {"$in": list(scope)}
        if wanted.state == "pending":
            where["pending"] = True
        elif wanted.state:
            where["decision"] = wanted.state
        if wanted.domain and wanted.kind == "mission":
            where["domain"] = wanted.domain
        found = await self.documents.find(QUEUE, where, sort=[("submitted_at", 1)], limit=LISTED_AT_MOST)
        if wanted.state and wanted.state != "pending":  # decided, and not submitted again since
            found = [e for e in found if not e.get("pending")]
        words = domain.name_key(wanted.text).split()
        if words:  # the text filter reads titles as duplicates are compared: case and accents set aside
            found = [e for e in found if all(w in domain.name_key(e.get("title", "")) for w in words)]
        if wanted.waiting_days:
            now = datetime.now(UTC)
            found = [e for e in found if hours_since(e["submitted_at"], now) >= wanted.waiting_days * 24]
        return found[::-1] if wanted.newest_first else found

    async def counts(self, actor: Actor) -> dict[ItemKind, dict[str, int]]:
        """How many items of each kind are in each state, in `actor`'s departments."""
        scope = await self.scope(actor)
        where: dict[str, Any] = {} if scope is None else {"department": {"$in": list(scope)}}
        counted: dict[ItemKind, dict[str, int]] = {}
        for kind, states in QUEUE_STATES.items():
            counted[kind] = {"pending": await self.documents.count(QUEUE, {**where, "kind": kind, "pending": True})}
            for state in states[1:]:
                decided = {**where, "kind": kind, "pending": False, "decision": state}
                counted[kind][state] = await self.documents.count(QUEUE, decided)
        return counted

    async def item(self, kind: ItemKind, item_id: str, actor: Actor) -> dict[str, Any]:
        """A mission or an organisation of the queue, for a referent of its department or an admin."""
        scope = await self.scope(actor)
        entry = await self.documents.get(QUEUE, item_id)
        if entry is None or entry.get("kind") != kind:
            raise NOT_IN_QUEUE()
        access.require_referent(actor, entry["department"], scope or ())
        return entry

    async def queued(self, item_id: str) -> dict[str, Any] | None:
        """An item of the queue as the projection shows it now, whatever its department (after a scoped action)."""
        return await self.documents.get(QUEUE, item_id)

    async def organization(self, organization_id: str) -> dict[str, Any] | None:
        """What the service knows of an organisation: its identity and status."""
        return await self.documents.get(ORGANIZATIONS, organization_id)

    async def mission_online(self, mission_id: str) -> dict[str, Any] | None:
        """A mission's lifecycle as the territory follows it: status, places, free places."""
        return await self.documents.get(MISSIONS, mission_id)

    # ---- the territory ----

    async def department_dashboard(self, department: str, actor: Actor) -> Dashboard:
        return await self.dashboard(await self.in_department(actor, department))

    async def dashboard(self, department: str | None, now: datetime | None = None) -> Dashboard:
        """Figures of one department, or national ones (department None)."""
        now = now or datetime.now(UTC)
        where: dict[str, Any] = {"department": department} if department else {}
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
        return Dashboard.model_validate(
            {
                "department": department,
                "missions_by_status": dict(sorted(by_status.items())),
                "online_missions_by_domain": {d: sum(1 for m in online if m.get("domain") == d) for d in DOMAINS},
                "places": {"offered": offered, "filled": offered - free, "free": free},
                "pending_moderation": {
                    "missions": await self.documents.count(QUEUE, {**where, "pending": True, "kind": "mission"}),
                    "oldest_age_hours": hours_since(waiting[0]["submitted_at"], now) if waiting else None,
                },
                "organizations_pending": await self.documents.count(ORGANIZATIONS, {**where, "status": "pending"}),
                "volunteers": volunteers,
                "open_missions": open_missions,
                # the seed's indicator: 3,400 volunteers for 100 missions in the Morbihan, 35 to 1
                "volunteers_per_open_mission": round(volunteers / open_missions, 1) if open_missions else None,
            }
        )
