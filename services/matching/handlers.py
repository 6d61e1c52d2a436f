"""Matching application layer: queries on the in-memory index, invitations, territory and idle jobs."""

import heapq
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from services.matching import domain
from services.matching.domain import MissionSpot, Outreach, Territory, Thresholds, VolunteerSpot
from services.matching.projections import ORGANIZATIONS, REFERENTS, MatchingIndex
from shared.events import Actor, Event, VolunteerIdle, outreach_stream, territory_stream
from shared.geo import postal_area_or_refusal
from shared.runtime.app import ServiceContext
from shared.runtime.problems import Problem
from shared.runtime.streams import decide_and_append

MISSION_NOT_FOUND = Problem(404, "mission_not_found", "Cette mission est introuvable ou n’a plus de place.")


def today() -> date:
    return datetime.now(UTC).date()


def index_of(ctx: ServiceContext) -> MatchingIndex:
    """One index per process, shared by the routes and the jobs."""
    return ctx.runtime.held(MatchingIndex, MatchingIndex)


@dataclass(frozen=True)
class SearchQuery:
    domains: tuple[str, ...] = ()
    text: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float = domain.DEFAULT_RADIUS_KM
    remote: bool | None = None  # None: both; True: remote only; False: on site only
    start: date | None = None
    end: date | None = None
    page: int = 1
    per_page: int = 20


class MatchingHandlers:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx, self.store, self.documents = ctx, ctx.store, ctx.documents
        self.index = index_of(ctx)
        self.crisis_mode = ctx.settings.crisis_mode
        self.thresholds = Thresholds(
            volunteers_per_place=ctx.settings.imbalance_volunteers_per_place,
            days_without_candidates=ctx.settings.imbalance_days_without_candidates,
        )

    async def follow_read_model(self) -> None:
        await self.index.follow(self.documents, self.ctx.settings.index_refresh_s)

    # ---- search ----

    def search(self, query: SearchQuery) -> dict[str, Any]:
        """Published missions with free places, nearest first then soonest; remote ones after the radius."""
        found: list[tuple[tuple[float, date, str], float | None, MissionSpot]] = []
        text = domain.folded(query.text).split() if query.text else []

        def keep(mission: MissionSpot) -> bool:
            return (
                mission.free_places > 0
                and (not query.domains or mission.domain in query.domains)
                and all(word in mission.search_text for word in text)
                and domain.overlaps(mission, query.start, query.end)
            )

        def found_at(rank: float, distance: float | None, mission: MissionSpot) -> None:
            if keep(mission):
                found.append(((rank, mission.start_date or date.max, mission.mission_id), distance, mission))

        if query.remote is not True:
            if query.latitude is not None and query.longitude is not None:
                for distance, mission in self.index.mission_grid.near(query.latitude, query.longitude, query.radius_km):
                    found_at(distance, distance, mission)
            else:  # no place given: every on-site mission, soonest first
                for mission in self.index.missions.values():
                    if not mission.remote:
                        found_at(0.0, None, mission)
        if query.remote is not False:
            # remote missions come after every on-site one of the radius: geography does not apply to them
            for mission in self.index.remote_missions.values():
                found_at(float("inf"), None, mission)
        start = (query.page - 1) * query.per_page
        page = heapq.nsmallest(start + query.per_page, found, key=lambda f: f[0])[start:]
        return {
            "total": len(found),
            "page": query.page,
            "per_page": query.per_page,
            "missions": [mission_view(m, d) for _, d, m in page],
        }

    def locate(self, postal_code: str) -> tuple[float, float]:
        area = postal_area_or_refusal(postal_code)
        if area.latitude is None:
            raise Problem(422, "unknown_postal_code", "Ce code postal n’est pas situé.", fields={"postal_code": "?"})
        return area.latitude, area.longitude

    # ---- recommendations ----

    def volunteer(self, volunteer_id: str) -> VolunteerSpot:
        found = self.index.volunteers.get(volunteer_id)
        if found is None:
            raise Problem(404, "volunteer_not_found", "Ce bénévole est introuvable.")
        return found

    def recommend_missions(self, volunteer_id: str, actor: Actor, limit: int = 20) -> list[dict[str, Any]]:
        """The missions that suit a volunteer best, each with the reason it is proposed."""
        if actor.role != "admin" and actor.id != volunteer_id:
            raise Problem(403, "forbidden", "Vous ne pouvez voir que vos propres recommandations.")
        volunteer = self.volunteer(volunteer_id)
        return [
            {**mission_view(m, d), "reason": domain.reason(d, m.domain)} for d, m in self.missions_for(volunteer, limit)
        ]

    def missions_for(self, volunteer: VolunteerSpot, limit: int) -> list[tuple[float | None, MissionSpot]]:
        day = today()
        candidates: list[tuple[tuple[float, date, str], float | None, MissionSpot]] = []
        wants_site = volunteer.mode != "remote" and not (self.crisis_mode and volunteer.onsite_restricted)
        if wants_site and volunteer.latitude is not None and volunteer.longitude is not None:
            for distance, mission in self.index.mission_grid.near(
                volunteer.latitude, volunteer.longitude, volunteer.max_distance_km
            ):
                if domain.suits(volunteer, mission, day, crisis_mode=self.crisis_mode):
                    candidates.append((domain.rank_key(distance, mission), distance, mission))
        if volunteer.mode != "on_site":
            for mission in self.index.remote_missions.values():
                if domain.suits(volunteer, mission, day, crisis_mode=self.crisis_mode):
                    candidates.append((domain.rank_key(None, mission), None, mission))
        return [(d, m) for _, d, m in heapq.nsmallest(limit, candidates, key=lambda c: c[0])]

    async def mission_of_manager(self, mission_id: str, actor: Actor) -> MissionSpot:
        mission = self.index.missions.get(mission_id)
        if mission is None:
            raise MISSION_NOT_FOUND
        organization = await self.documents.get(ORGANIZATIONS, mission.organization_id) or {"manager_ids": []}
        if actor.role != "admin" and actor.id not in organization["manager_ids"]:
            raise Problem(
                403, "forbidden", "Seuls les responsables de l’organisation peuvent solliciter des bénévoles."
            )
        return mission

    async def recommend_volunteers(self, mission_id: str, actor: Actor, limit: int = 20) -> list[dict[str, Any]]:
        """Visible volunteers an organisation may invite: within their own reach, eligible, not applied."""
        mission = await self.mission_of_manager(mission_id, actor)
        day = today()
        found: list[tuple[tuple[int, float, str], float, VolunteerSpot]] = []
        if mission.located():
            assert mission.latitude is not None and mission.longitude is not None
            for distance, volunteer in self.index.volunteer_grid.near(
                mission.latitude, mission.longitude, self.ctx.settings.max_invitation_radius_km
            ):
                if (
                    volunteer.visible
                    and domain.can_reach(volunteer, distance)
                    and self._may_take(volunteer, mission, day)
                ):
                    found.append((domain.volunteer_rank_key(distance, volunteer, mission), distance, volunteer))
        else:
            for volunteer_id in self.index.department_volunteers.get(mission.department, ()):
                volunteer = self.index.volunteers[volunteer_id]
                if volunteer.visible and self._may_take(volunteer, mission, day):
                    found.append((domain.volunteer_rank_key(0.0, volunteer, mission), 0.0, volunteer))
        best = heapq.nsmallest(limit, found, key=lambda f: f[0])
        return [volunteer_view(v, d if mission.located() else None) for _, d, v in best]

    def _may_take(self, volunteer: VolunteerSpot, mission: MissionSpot, day: date) -> bool:
        # volunteers of other domains may still be asked: they rank after those who chose it
        return domain.suits(volunteer, mission, day, crisis_mode=self.crisis_mode, any_domain=True)

    # ---- invitations ----

    async def invite(self, mission_id: str, volunteer_id: str, actor: Actor) -> dict[str, Any]:
        mission = await self.mission_of_manager(mission_id, actor)
        volunteer = self.volunteer(volunteer_id)
        day = today()

        async def decide(history: list[Event]) -> list[Event]:
            outreach = Outreach.replay(volunteer_id, history)
            return [domain.invite(outreach, mission, volunteer, actor.id, day, crisis_mode=self.crisis_mode)]

        await decide_and_append(self.store, outreach_stream(volunteer_id), decide, actor=actor)
        return {"mission_id": mission_id, "volunteer_id": volunteer_id, "invited_on": day.isoformat()}

    # ---- territory ----

    async def require_referent(self, department: str, actor: Actor) -> None:
        if actor.role == "admin":
            return
        referent = await self.documents.get(REFERENTS, actor.id) if actor.role == "referent" else None
        if referent is None or department not in referent["departments"]:
            raise Problem(403, "forbidden", "Ce département n’est pas le vôtre.")

    def figures(self, department: str) -> dict[str, domain.DomainFigures]:
        volunteers = (self.index.volunteers[v] for v in self.index.department_volunteers.get(department, ()))
        missions = (self.index.missions[m] for m in self.index.department_missions.get(department, ()))
        return domain.department_figures(volunteers, missions, today(), self.thresholds)

    async def territory(self, department: str, actor: Actor) -> dict[str, Any]:
        await self.require_referent(department, actor)
        figures = self.figures(department)
        summaries = domain.imbalances(figures, self.thresholds)
        return {
            "department": department,
            "domains": [
                {
                    "domain": f.domain,
                    "label": domain.DOMAIN_LABELS[f.domain],
                    "volunteers": f.volunteers,
                    "open_places": f.open_places,
                    "volunteers_per_place": f.ratio,
                    "missions_without_candidates": f.missions_without_candidates,
                }
                for f in figures.values()
            ],
            "imbalances": [{"kind": k, "domain": d, "summary": s} for (k, d), s in sorted(summaries.items())],
        }

    async def assess_territory(self, department: str) -> list[Event]:
        """Raise or clear the department's imbalances (idempotent: nothing new, nothing appended)."""
        figures = self.figures(department)

        async def decide(history: list[Event]) -> list[Event]:
            return list(domain.reassess(Territory.replay(department, history), figures, self.thresholds))

        return await decide_and_append(self.store, territory_stream(department), decide)

    async def assess_territories(self) -> int:
        departments = set(self.index.department_volunteers) | set(self.index.department_missions)
        return sum([len(await self.assess_territory(d)) for d in sorted(departments)])

    # ---- idle volunteers ----

    async def detect_idle(self, day: date | None = None) -> int:
        """VolunteerIdle for each volunteer still without an accepted application, once per period."""
        day = day or today()
        after = self.ctx.settings.idle_after_days
        idle = [
            v for v in list(self.index.volunteers.values()) if not v.accepted and (day - v.registered_on).days >= after
        ]
        emitted = 0
        for volunteer in idle:

            async def decide(history: list[Event], volunteer: VolunteerSpot = volunteer) -> list[Event]:
                outreach = Outreach.replay(volunteer.volunteer_id, history)
                if not domain.is_idle(volunteer, outreach.idle_periods, day, after):
                    return []
                nearby = [m.mission_id for _, m in self.missions_for(volunteer, 5)]
                return [
                    VolunteerIdle(
                        volunteer_id=volunteer.volunteer_id,
                        period=domain.idle_period(day),
                        department=volunteer.department,
                        days_since_sign_up=(day - volunteer.registered_on).days,
                        nearby_mission_ids=nearby,
                    )
                ]

            emitted += len(await decide_and_append(self.store, outreach_stream(volunteer.volunteer_id), decide))
        return emitted


def mission_view(mission: MissionSpot, distance: float | None) -> dict[str, Any]:
    return {
        "id": mission.mission_id,
        "organization_id": mission.organization_id,
        "title": mission.title,
        "domain": mission.domain,
        "remote": mission.remote,
        "department": mission.department,
        "commune": mission.commune,
        "free_places": mission.free_places,
        "start_date": mission.start_date,
        "end_date": mission.end_date,
        "distance_km": None if distance is None else round(distance, 1),
    }


def volunteer_view(volunteer: VolunteerSpot, distance: float | None) -> dict[str, Any]:
    """What an organisation sees before inviting: no name, no contact (JeVeuxAider hides them too)."""
    return {
        "volunteer_id": volunteer.volunteer_id,
        "department": volunteer.department,
        "distance_km": None if distance is None else round(distance, 1),
        "domains": sorted(volunteer.domains),
        "availability": sorted(volunteer.availability),
        "mode": volunteer.mode,
    }
