"""Matching application layer: queries on the in-memory index, invitations, territory and idle jobs."""

import heapq
from datetime import UTC, date, datetime

from services.matching import domain
from services.matching.domain import MissionSpot, Outreach, Territory, Thresholds, VolunteerSpot
from services.matching.projections import MatchingIndex, appointed_departments, manager_ids
from shared import access, geo
from shared.contracts.matching import (
    DomainSupply,
    Imbalance,
    MissionInvitationSent,
    MissionMatch,
    MissionSearch,
    MissionSearchPage,
    RecommendedMission,
    SuggestedVolunteer,
    TerritoryFigures,
)
from shared.errors import Invalid, NotFound
from shared.events import Actor, Event, VolunteerIdle, outreach_stream, territory_stream
from shared.events.vocabulary import DOMAIN_LABELS, Domain
from shared.runtime.app import ServiceContext
from shared.runtime.streams import decide_and_append

MISSION_NOT_FOUND = NotFound("mission_not_found", "Cette mission est introuvable ou n’a plus de place.")
INCOMPLETE_COORDINATES = Invalid("incomplete_coordinates", "Indiquez la latitude et la longitude ensemble.")
INVALID_DATES = Invalid("invalid_dates", "La date de fin précède la date de début.", fields={"end": "avant le début"})


def today() -> date:
    return datetime.now(UTC).date()


def index_of(ctx: ServiceContext) -> MatchingIndex:
    """One index per process, shared by the routes and the jobs."""
    return ctx.runtime.held(MatchingIndex, MatchingIndex)


class MatchingHandlers:
    """Built once at start (the service's composition root); `index` defaults to the process's own."""

    def __init__(self, ctx: ServiceContext, index: MatchingIndex | None = None) -> None:
        self.ctx, self.store, self.documents = ctx, ctx.store, ctx.documents
        self.index = index if index is not None else index_of(ctx)
        self.crisis_mode = ctx.settings.crisis_mode
        self.thresholds = Thresholds(
            volunteers_per_place=ctx.settings.imbalance_volunteers_per_place,
            days_without_candidates=ctx.settings.imbalance_days_without_candidates,
        )

    async def follow_read_model(self) -> None:
        await self.index.follow(self.documents, self.ctx.settings.index_refresh_s)

    # ---- search ----

    def search(self, query: MissionSearch) -> MissionSearchPage:
        """Published missions with free places, nearest first then soonest; remote ones after the radius.
        A postal code places the search at its commune."""
        if (query.latitude is None) != (query.longitude is None):
            raise INCOMPLETE_COORDINATES()
        if query.start and query.end and query.end < query.start:
            raise INVALID_DATES()
        latitude, longitude = self.locate(query.postal_code) if query.postal_code else (query.latitude, query.longitude)
        found: list[tuple[tuple[float, date, str], float | None, MissionSpot]] = []
        text = domain.folded(query.text).split() if query.text else []

        def keep(mission: MissionSpot) -> bool:
            return (
                mission.free_places > 0
                and (not query.domain or mission.domain in query.domain)
                and all(word in mission.search_text for word in text)
                and domain.overlaps(mission, query.start, query.end)
            )

        def found_at(rank: float, distance: float | None, mission: MissionSpot) -> None:
            if keep(mission):
                found.append(((rank, mission.start_date or date.max, mission.mission_id), distance, mission))

        if query.remote is not True:
            if latitude is not None and longitude is not None:
                for distance, mission in self.index.mission_grid.near(latitude, longitude, query.radius_km):
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
        return MissionSearchPage(
            total=len(found),
            page=query.page,
            per_page=query.per_page,
            missions=[mission_view(m, d) for _, d, m in page],
        )

    def locate(self, postal_code: str) -> tuple[float, float]:
        area = geo.postal_area_or_refusal(postal_code)
        return area.latitude, area.longitude

    # ---- recommendations ----

    def volunteer(self, volunteer_id: str) -> VolunteerSpot:
        found = self.index.volunteers.get(volunteer_id)
        if found is None:
            raise domain.VOLUNTEER_NOT_FOUND()
        return found

    def recommend_missions(self, volunteer_id: str, actor: Actor, limit: int = 20) -> list[RecommendedMission]:
        """The missions that suit a volunteer best, each with the reason it is proposed."""
        access.require_self(actor, volunteer_id, admin_too=True)
        volunteer = self.volunteer(volunteer_id)
        return [
            RecommendedMission(**mission_view(m, d).model_dump(), reason=domain.reason(d, m.domain))
            for d, m in self.missions_for(volunteer, limit)
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
        """The mission, for a manager of its organisation or an admin."""
        access.require_role(actor, "manager", "admin")
        mission = self.index.missions.get(mission_id)
        if mission is None:
            raise MISSION_NOT_FOUND()
        access.require_manager(actor, await manager_ids(self.documents, mission.organization_id))
        return mission

    async def recommend_volunteers(self, mission_id: str, actor: Actor, limit: int = 20) -> list[SuggestedVolunteer]:
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

    async def invite(self, mission_id: str, volunteer_id: str, actor: Actor) -> MissionInvitationSent:
        mission = await self.mission_of_manager(mission_id, actor)
        volunteer = self.volunteer(volunteer_id)
        day = today()

        async def decide(history: list[Event]) -> list[Event]:
            outreach = Outreach.replay(volunteer_id, history)
            return [domain.invite(outreach, mission, volunteer, actor.id, day, crisis_mode=self.crisis_mode)]

        await decide_and_append(self.store, outreach_stream(volunteer_id), decide, actor=actor)
        return MissionInvitationSent(mission_id=mission_id, volunteer_id=volunteer_id, invited_on=day)

    # ---- territory ----

    async def require_referent(self, department: str, actor: Actor) -> None:
        """A referent appointed to the department, or an admin."""
        access.require_role(actor, "referent", "admin")
        appointed = await appointed_departments(self.documents, actor.id) if actor.role == "referent" else []
        access.require_referent(actor, department, appointed)

    def figures(self, department: str) -> dict[Domain, domain.DomainFigures]:
        volunteers = (self.index.volunteers[v] for v in self.index.department_volunteers.get(department, ()))
        missions = (self.index.missions[m] for m in self.index.department_missions.get(department, ()))
        return domain.department_figures(volunteers, missions, today(), self.thresholds)

    async def territory(self, department: str, actor: Actor) -> TerritoryFigures:
        await self.require_referent(department, actor)
        figures = self.figures(department)
        summaries = domain.imbalances(figures, self.thresholds)
        return TerritoryFigures(
            department=department,
            domains=[
                DomainSupply(
                    domain=f.domain,
                    label=DOMAIN_LABELS[f.domain],
                    volunteers=f.volunteers,
                    open_places=f.open_places,
                    volunteers_per_place=f.ratio,
                    missions_without_candidates=f.missions_without_candidates,
                )
                for f in figures.values()
            ],
            imbalances=[Imbalance(kind=k, domain=d, summary=s) for (k, d), s in sorted(summaries.items())],
        )

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


def mission_view(mission: MissionSpot, distance: float | None) -> MissionMatch:
    return MissionMatch(
        id=mission.mission_id,
        organization_id=mission.organization_id,
        title=mission.title,
        domain=mission.domain,
        remote=mission.remote,
        department=mission.department,
        commune=mission.commune,
        free_places=mission.free_places,
        start_date=mission.start_date,
        end_date=mission.end_date,
        distance_km=None if distance is None else round(distance, 1),
        latitude=mission.latitude,
        longitude=mission.longitude,
    )


def volunteer_view(volunteer: VolunteerSpot, distance: float | None) -> SuggestedVolunteer:
    """What an organisation sees before inviting: no name, no contact (JeVeuxAider hides them too)."""
    return SuggestedVolunteer(
        volunteer_id=volunteer.volunteer_id,
        department=volunteer.department,
        distance_km=None if distance is None else round(distance, 1),
        domains=sorted(volunteer.domains),
        availability=sorted(volunteer.availability),
        mode=volunteer.mode,
    )
