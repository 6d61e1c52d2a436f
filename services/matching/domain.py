"""Matching rules, pure: who suits which mission, in what order, how often an organisation may invite,
when a territory is out of balance and when a volunteer is idle. The I/O is in the handlers."""

import math
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Generic, TypeVar

from shared.contracts import matching as contract
from shared.errors import Conflict, LimitReached, NotFound
from shared.events import Event, TerritoryImbalanceCleared, TerritoryImbalanceDetected, VolunteerIdle, VolunteerInvited
from shared.events.vocabulary import DOMAIN_LABELS, DOMAINS, Availability, Domain, MissionMode
from shared.geo import distance_km

DEFAULT_RADIUS_KM = contract.DEFAULT_RADIUS_KM
REMOTE_RANK_KM = 10.0  # a remote mission ranks like an on-site one at this distance
MAX_INVITATIONS_PER_MONTH = 2  # per volunteer, every organisation together (JeVeuxAider's rule)


@dataclass(slots=True)
class MissionSpot:
    """A published mission as matching sees it (only missions with free places are indexed)."""

    mission_id: str
    organization_id: str
    title: str
    domain: Domain
    remote: bool
    department: str
    latitude: float | None
    longitude: float | None
    free_places: int
    start_date: date | None
    end_date: date | None
    open_to_minors: bool
    published_on: date
    commune: str | None = None
    search_text: str = ""
    candidates: int = 0
    last_candidate_on: date | None = None

    def located(self) -> bool:
        return not self.remote and self.latitude is not None and self.longitude is not None


@dataclass(slots=True)
class VolunteerSpot:
    """A volunteer's public matching profile: no name, no contact, only what ranking needs."""

    volunteer_id: str
    department: str
    latitude: float | None
    longitude: float | None
    domains: frozenset[Domain]
    availability: frozenset[Availability]
    mode: MissionMode
    max_distance_km: int
    onsite_restricted: bool
    minor: bool
    visible: bool
    registered_on: date
    applied: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)


# ---- the spatial index ----

Item = TypeVar("Item")


class Grid(Generic[Item]):
    """Points bucketed in cells of `cell_deg` degrees: a radius query reads only the cells the circle touches.

    No geo operator in the store (FerretDB has none): the index lives in memory and is rebuilt from
    the read model at start.
    """

    def __init__(self, cell_deg: float = 0.1) -> None:
        self.cell_deg = cell_deg
        self.cells: dict[tuple[int, int], dict[str, tuple[float, float, Item]]] = {}
        self.where: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.where)

    def _cell(self, latitude: float, longitude: float) -> tuple[int, int]:
        return math.floor(latitude / self.cell_deg), math.floor(longitude / self.cell_deg)

    def put(self, key: str, latitude: float, longitude: float, item: Item) -> None:
        self.remove(key)
        cell = self._cell(latitude, longitude)
        self.cells.setdefault(cell, {})[key] = (latitude, longitude, item)
        self.where[key] = cell

    def remove(self, key: str) -> None:
        cell = self.where.pop(key, None)
        if cell is not None:
            bucket = self.cells[cell]
            del bucket[key]
            if not bucket:
                del self.cells[cell]

    def near(self, latitude: float, longitude: float, radius_km: float) -> Iterator[tuple[float, Item]]:
        """(distance in km, item) for every point within `radius_km`, in no particular order."""
        lat_span = radius_km / 111.2
        # at the poles' side of the circle the longitude degrees are the shortest: widen by that latitude
        widest = min(89.0, abs(latitude) + lat_span)
        lon_span = min(180.0, radius_km / (111.2 * math.cos(math.radians(widest))))
        low, high = (
            self._cell(latitude - lat_span, longitude - lon_span),
            self._cell(latitude + lat_span, longitude + lon_span),
        )
        for row in range(low[0], high[0] + 1):
            for column in range(low[1], high[1] + 1):
                for lat, lon, item in self.cells.get((row, column), {}).values():
                    # a cheap box test first: most points of the corner cells are outside the circle
                    if abs(lat - latitude) > lat_span or abs(lon - longitude) > lon_span:
                        continue
                    distance = distance_km(latitude, longitude, lat, lon)
                    if distance <= radius_km:
                        yield distance, item


# ---- search and recommendations ----


def folded(text: str) -> str:
    """Lower case without accents, for a search that finds "entraide" in "Entraide Élan"."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def overlaps(mission: MissionSpot, start: date | None, end: date | None) -> bool:
    if start is not None and mission.end_date is not None and mission.end_date < start:
        return False
    return not (end is not None and mission.start_date is not None and mission.start_date > end)


def days_needed(mission: MissionSpot) -> frozenset[str] | None:
    """Which availabilities a short mission needs (weekends, weekdays), or None when it does not say."""
    if mission.start_date is None or mission.end_date is None or (mission.end_date - mission.start_date).days > 6:
        return None
    days = [mission.start_date + timedelta(days=n) for n in range((mission.end_date - mission.start_date).days + 1)]
    kinds = {"weekends" if d.weekday() >= 5 else "weekdays" for d in days}
    return frozenset(kinds)


def ineligibility(volunteer: VolunteerSpot, mission: MissionSpot, *, crisis_mode: bool) -> str | None:
    """Why this volunteer may not apply to this mission (a French sentence), or None."""
    if volunteer.minor and not mission.open_to_minors:
        return "La mission n’est pas ouverte aux mineurs."
    if crisis_mode and volunteer.onsite_restricted and not mission.remote:
        return "En période de crise, seules les missions à distance vous sont ouvertes."
    return None


def suits(
    volunteer: VolunteerSpot, mission: MissionSpot, today: date, *, crisis_mode: bool, any_domain: bool = False
) -> bool:
    """Everything but distance: open, wanted (unless `any_domain`), possible, not applied yet."""
    if mission.free_places <= 0 or (mission.end_date is not None and mission.end_date < today):
        return False
    if mission.mission_id in volunteer.applied:
        return False
    if not any_domain and volunteer.domains and mission.domain not in volunteer.domains:
        return False
    if mission.remote and volunteer.mode == "on_site":
        return False
    if not mission.remote and volunteer.mode == "remote":
        return False
    needed = days_needed(mission)
    if needed is not None and volunteer.availability:
        offered = {"weekdays" if a == "evenings" else a for a in volunteer.availability}
        if not needed & offered:
            return False
    return ineligibility(volunteer, mission, crisis_mode=crisis_mode) is None


def rank_key(distance: float | None, mission: MissionSpot) -> tuple[float, date, str]:
    """Nearest first, then the soonest start; remote missions rank as if `REMOTE_RANK_KM` away."""
    return (REMOTE_RANK_KM if distance is None else distance, mission.start_date or date.max, mission.mission_id)


def reason(distance: float | None, domain: Domain) -> str:
    """Why a mission is proposed, as the volunteer reads it: "à 4 km, aide alimentaire et d’urgence"."""
    where = "à distance" if distance is None else "à moins d’1 km" if distance < 1 else f"à {round(distance)} km"
    return f"{where}, {DOMAIN_LABELS[domain]}"


def can_reach(volunteer: VolunteerSpot, distance: float) -> bool:
    return distance <= volunteer.max_distance_km


def volunteer_rank_key(distance: float, volunteer: VolunteerSpot, mission: MissionSpot) -> tuple[int, float, str]:
    """For an organisation: those who chose the mission's domain first, then the nearest."""
    return (0 if mission.domain in volunteer.domains else 1, distance, volunteer.volunteer_id)


# ---- invitations: once per mission, at most two a month per volunteer ----

VOLUNTEER_NOT_FOUND = NotFound("volunteer_not_found", "Ce bénévole est introuvable.")
MISSION_FULL = Conflict("mission_full", "La mission n’a plus de place : inutile d’inviter.")
ALREADY_INVITED = Conflict("already_invited", "Ce bénévole a déjà été invité à cette mission.")
ALREADY_APPLIED = Conflict("already_applied", "Ce bénévole a déjà proposé son aide pour cette mission.")
INVITATION_LIMIT_REACHED = LimitReached(
    "invitation_limit_reached", "Ce bénévole a déjà reçu deux sollicitations ce mois-ci : réessayez le mois prochain."
)
VOLUNTEER_NOT_ELIGIBLE = Conflict("volunteer_not_eligible", "Ce bénévole ne peut pas participer à cette mission.")


@dataclass
class Outreach:
    """What a volunteer already received from matching: invitations and idle digests."""

    volunteer_id: str
    invited_to: set[str] = field(default_factory=set)
    invitations_by_month: dict[str, int] = field(default_factory=dict)
    idle_periods: set[str] = field(default_factory=set)

    @classmethod
    def replay(cls, volunteer_id: str, events: Iterable[Event]) -> "Outreach":
        outreach = cls(volunteer_id)
        for event in events:
            if isinstance(event, VolunteerInvited):
                outreach.invited_to.add(event.mission_id)
                month = event.invited_on.strftime("%Y-%m")
                outreach.invitations_by_month[month] = outreach.invitations_by_month.get(month, 0) + 1
            elif isinstance(event, VolunteerIdle):
                outreach.idle_periods.add(event.period)
        return outreach


def invite(
    outreach: Outreach, mission: MissionSpot, volunteer: VolunteerSpot, by: str, today: date, *, crisis_mode: bool
) -> VolunteerInvited:
    if not volunteer.visible:
        raise VOLUNTEER_NOT_FOUND()
    if mission.free_places <= 0:
        raise MISSION_FULL()
    if mission.mission_id in outreach.invited_to:
        raise ALREADY_INVITED()
    if mission.mission_id in volunteer.applied:
        raise ALREADY_APPLIED()
    if outreach.invitations_by_month.get(today.strftime("%Y-%m"), 0) >= MAX_INVITATIONS_PER_MONTH:
        raise INVITATION_LIMIT_REACHED()
    why = ineligibility(volunteer, mission, crisis_mode=crisis_mode)
    if why:
        raise VOLUNTEER_NOT_ELIGIBLE.with_fields({"volunteer_id": why})
    return VolunteerInvited(
        volunteer_id=volunteer.volunteer_id,
        mission_id=mission.mission_id,
        organization_id=mission.organization_id,
        invited_by=by,
        invited_on=today,
    )


# ---- idle volunteers ----


def idle_period(today: date) -> str:
    """Idle digests go out at most once per calendar month."""
    return today.strftime("%Y-%m")


def is_idle(volunteer: VolunteerSpot, outreach_periods: set[str], today: date, idle_after_days: int) -> bool:
    return (
        not volunteer.accepted
        and (today - volunteer.registered_on).days >= idle_after_days
        and idle_period(today) not in outreach_periods
    )


# ---- territory: supply and demand per department and domain ----

ImbalanceKind = contract.ImbalanceKind


@dataclass(frozen=True)
class DomainFigures:
    domain: Domain
    volunteers: int
    open_places: int
    missions_without_candidates: int

    @property
    def ratio(self) -> float | None:
        """Available volunteers per open place (None when no place is open)."""
        return round(self.volunteers / self.open_places, 1) if self.open_places else None


@dataclass(frozen=True)
class Thresholds:
    volunteers_per_place: float
    days_without_candidates: int


def department_figures(
    volunteers: Iterable[VolunteerSpot], missions: Iterable[MissionSpot], today: date, thresholds: Thresholds
) -> dict[Domain, DomainFigures]:
    """Per domain: volunteers without an accepted application, open places, missions left without candidates."""
    counts: dict[Domain, list[int]] = {d: [0, 0, 0] for d in DOMAINS}
    for volunteer in volunteers:
        if volunteer.accepted:
            continue
        for domain in volunteer.domains or DOMAINS:
            counts[domain][0] += 1
    stale = today - timedelta(days=thresholds.days_without_candidates)
    for mission in missions:
        counts[mission.domain][1] += max(0, mission.free_places)
        if mission.free_places > 0 and (mission.last_candidate_on or mission.published_on) <= stale:
            counts[mission.domain][2] += 1
    return {d: DomainFigures(d, *c) for d, c in counts.items()}


def imbalances(figures: dict[Domain, DomainFigures], thresholds: Thresholds) -> dict[tuple[ImbalanceKind, Domain], str]:
    """The imbalances of a department, each with its French summary for the referents."""
    found: dict[tuple[ImbalanceKind, Domain], str] = {}
    for domain, f in figures.items():
        label = DOMAIN_LABELS[domain]
        if f.open_places and f.volunteers / f.open_places > thresholds.volunteers_per_place:
            found[("too_many_volunteers", domain)] = (
                f"{f.volunteers} bénévoles disponibles pour {f.open_places} places ouvertes ({label}) : "
                "il manque des missions."
            )
        if f.missions_without_candidates:
            found[("missions_without_candidates", domain)] = (
                f"{f.missions_without_candidates} mission(s) sans candidat depuis "
                f"{thresholds.days_without_candidates} jours ({label}) : il manque des bénévoles."
            )
    return found


@dataclass
class Territory:
    """The imbalances currently raised for one department (from its events)."""

    department: str
    active: set[tuple[ImbalanceKind, Domain]] = field(default_factory=set)

    @classmethod
    def replay(cls, department: str, events: Iterable[Event]) -> "Territory":
        territory = cls(department)
        for event in events:
            if isinstance(event, TerritoryImbalanceDetected):
                territory.active.add((event.kind, event.domain))
            elif isinstance(event, TerritoryImbalanceCleared):
                territory.active.discard((event.kind, event.domain))
        return territory


def reassess(
    territory: Territory, figures: dict[Domain, DomainFigures], thresholds: Thresholds
) -> list[TerritoryImbalanceDetected | TerritoryImbalanceCleared]:
    """Raise what crossed a threshold, clear what came back to normal, say nothing about the rest."""
    now = imbalances(figures, thresholds)
    changes: list[TerritoryImbalanceDetected | TerritoryImbalanceCleared] = []
    for (kind, domain), summary in sorted(now.items()):
        if (kind, domain) not in territory.active:
            f = figures[domain]
            changes.append(
                TerritoryImbalanceDetected(
                    department=territory.department,
                    kind=kind,
                    domain=domain,
                    volunteers=f.volunteers,
                    open_places=f.open_places,
                    missions_without_candidates=f.missions_without_candidates,
                    summary=summary,
                )
            )
    for kind, domain in sorted(territory.active - set(now)):
        changes.append(TerritoryImbalanceCleared(department=territory.department, kind=kind, domain=domain))
    return changes
