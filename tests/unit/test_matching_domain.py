"""Matching rules without I/O: the grid, eligibility, ranking, invitation caps, imbalances, idleness."""

from datetime import date, timedelta

import pytest

from services.matching.domain import (
    Grid,
    MissionSpot,
    Outreach,
    Territory,
    Thresholds,
    VolunteerSpot,
    department_figures,
    invite,
    is_idle,
    rank_key,
    reason,
    reassess,
    suits,
)
from shared.errors import LimitReached, Refusal
from shared.events import TerritoryImbalanceCleared, TerritoryImbalanceDetected, VolunteerIdle, VolunteerInvited
from shared.geo import distance_km, postal_area

MONDAY = date(2026, 11, 23)
VANNES, LORIENT, PARIS = (47.658, -2.760), (47.750, -3.367), (48.857, 2.352)


def mission(mission_id="m1", where=VANNES, **change) -> MissionSpot:
    values = dict(
        mission_id=mission_id,
        organization_id="org-1",
        title="Maraude",
        domain="food_and_emergency_aid",
        remote=where is None,
        department="56",
        latitude=where[0] if where else None,
        longitude=where[1] if where else None,
        free_places=3,
        start_date=None,
        end_date=None,
        open_to_minors=False,
        published_on=MONDAY - timedelta(days=30),
    )
    return MissionSpot(**(values | change))


def volunteer(volunteer_id="v1", where=VANNES, **change) -> VolunteerSpot:
    values = dict(
        volunteer_id=volunteer_id,
        department="56",
        latitude=where[0],
        longitude=where[1],
        domains=frozenset({"food_and_emergency_aid"}),
        availability=frozenset({"weekends"}),
        mode="both",
        max_distance_km=20,
        onsite_restricted=False,
        minor=False,
        visible=True,
        registered_on=MONDAY - timedelta(days=30),
    )
    return VolunteerSpot(**(values | change))


def test_the_grid_finds_exactly_the_points_within_the_radius_across_cells():
    grid: Grid[str] = Grid(cell_deg=0.1)
    grid.put("vannes", *VANNES, "vannes")
    grid.put("lorient", *LORIENT, "lorient")
    grid.put("paris", *PARIS, "paris")
    apart = distance_km(*VANNES, *LORIENT)
    assert 46 < apart < 48
    assert sorted(i for _, i in grid.near(*VANNES, apart + 0.01)) == ["lorient", "vannes"]
    assert sorted(i for _, i in grid.near(*VANNES, apart - 0.01)) == ["vannes"]
    assert [round(d) for d, i in grid.near(*VANNES, 500) if i == "paris"] == [round(distance_km(*VANNES, *PARIS))]
    grid.put("vannes", *PARIS, "vannes")  # moved: found at its new place only
    assert sorted(i for _, i in grid.near(*PARIS, 1)) == ["paris", "vannes"] and len(grid) == 3
    grid.remove("vannes")
    grid.remove("unknown")
    assert [i for _, i in grid.near(*PARIS, 1)] == ["paris"] and len(grid) == 2


@pytest.mark.parametrize("postal_code", ["97400", "97600", "20000", "20200", "97200", "75001"])
def test_the_grid_works_overseas_and_in_corsica(postal_code):
    area = postal_area(postal_code)
    grid: Grid[str] = Grid()
    grid.put("here", area.latitude, area.longitude, "here")
    grid.put("near", area.latitude + 0.05, area.longitude + 0.05, "near")
    assert {i for _, i in grid.near(area.latitude, area.longitude, 10)} == {"here", "near"}
    assert [i for _, i in grid.near(area.latitude, area.longitude, 0.001)] == ["here"]


def test_nearest_first_then_soonest_and_remote_as_if_ten_km_away():
    soon, later = mission("soon", start_date=MONDAY), mission("later", start_date=MONDAY + timedelta(days=5))
    remote = mission("remote", where=None)
    keys = sorted([rank_key(3.0, later), rank_key(3.0, soon), rank_key(12.0, soon), rank_key(None, remote)])
    assert [k[0] for k in keys] == [3.0, 3.0, 10.0, 12.0]
    assert keys[0][2] == "soon"
    assert reason(4.4, "food_and_emergency_aid") == "à 4 km, aide alimentaire et d’urgence"
    assert reason(None, "keeping_in_touch") == "à distance, lien avec les personnes isolées"
    assert reason(0.3, "emergency_childcare") == "à moins d’1 km, garde d’enfants"


def test_what_suits_a_volunteer():
    v = volunteer()
    assert suits(v, mission(), MONDAY, crisis_mode=True)
    assert not suits(v, mission(free_places=0), MONDAY, crisis_mode=True)
    assert not suits(v, mission(end_date=MONDAY - timedelta(days=1)), MONDAY, crisis_mode=True)
    assert not suits(v, mission(domain="emergency_childcare"), MONDAY, crisis_mode=True)
    assert suits(v, mission(domain="emergency_childcare"), MONDAY, crisis_mode=True, any_domain=True)
    assert not suits(volunteer(minor=True), mission(), MONDAY, crisis_mode=True)
    assert suits(volunteer(minor=True), mission(open_to_minors=True), MONDAY, crisis_mode=True)
    assert not suits(volunteer(onsite_restricted=True), mission(), MONDAY, crisis_mode=True)
    assert suits(volunteer(onsite_restricted=True), mission(), MONDAY, crisis_mode=False)
    assert suits(volunteer(onsite_restricted=True), mission(where=None), MONDAY, crisis_mode=True)
    assert not suits(volunteer(mode="remote"), mission(), MONDAY, crisis_mode=True)
    assert not suits(volunteer(mode="on_site"), mission(where=None), MONDAY, crisis_mode=True)
    weekdays = mission(start_date=MONDAY, end_date=MONDAY + timedelta(days=2))
    assert not suits(v, weekdays, MONDAY, crisis_mode=True)  # weekends only
    assert suits(volunteer(availability=frozenset({"evenings"})), weekdays, MONDAY, crisis_mode=True)
    v.applied.add("m1")
    assert not suits(v, mission(), MONDAY, crisis_mode=True)


def invited(mission_id: str, on: date) -> VolunteerInvited:
    return VolunteerInvited(
        volunteer_id="v1", mission_id=mission_id, organization_id="o", invited_by="x", invited_on=on
    )


def test_invitations_once_per_mission_and_two_a_month():
    v = volunteer()
    first = invite(Outreach.replay("v1", []), mission("m1"), v, "manager-1", MONDAY, crisis_mode=True)
    assert (first.mission_id, first.invited_on) == ("m1", MONDAY)
    history = [first]
    with pytest.raises(Refusal) as again:
        invite(Outreach.replay("v1", history), mission("m1"), v, "manager-1", MONDAY, crisis_mode=True)
    assert again.value.code == "already_invited"
    history.append(invite(Outreach.replay("v1", history), mission("m2"), v, "m", MONDAY, crisis_mode=True))
    with pytest.raises(Refusal) as third:
        invite(Outreach.replay("v1", history), mission("m3"), v, "m", MONDAY, crisis_mode=True)
    assert isinstance(third.value, LimitReached) and third.value.code == "invitation_limit_reached"
    next_month = date(2026, 12, 1)
    assert invite(Outreach.replay("v1", history), mission("m3"), v, "m", next_month, crisis_mode=True)
    for refused, code in [
        (dict(visible=False), "volunteer_not_found"),
        (dict(minor=True), "volunteer_not_eligible"),
    ]:
        with pytest.raises(Refusal) as error:
            invite(Outreach.replay("v1", []), mission("m9"), volunteer(**refused), "m", MONDAY, crisis_mode=True)
        assert error.value.code == code
    with pytest.raises(Refusal) as full:
        invite(Outreach.replay("v1", []), mission("m9", free_places=0), v, "m", MONDAY, crisis_mode=True)
    assert full.value.code == "mission_full"


def test_imbalances_are_raised_once_and_cleared_when_back_to_normal():
    thresholds = Thresholds(volunteers_per_place=2, days_without_candidates=7)
    crowd = [volunteer(f"v{n}") for n in range(7)]
    one_place = [mission("m1", free_places=1, last_candidate_on=MONDAY)]
    figures = department_figures(crowd, one_place, MONDAY, thresholds)
    assert figures["food_and_emergency_aid"].ratio == 7.0
    raised = reassess(Territory("56"), figures, thresholds)
    assert [(type(e), e.kind, e.domain) for e in raised] == [
        (TerritoryImbalanceDetected, "too_many_volunteers", "food_and_emergency_aid")
    ]
    assert "7 bénévoles disponibles pour 1 places" in raised[0].summary
    assert reassess(Territory.replay("56", raised), figures, thresholds) == []  # still the same: nothing new
    balanced = department_figures(crowd[:2], one_place, MONDAY, thresholds)
    cleared = reassess(Territory.replay("56", raised), balanced, thresholds)
    assert [(type(e), e.kind) for e in cleared] == [(TerritoryImbalanceCleared, "too_many_volunteers")]

    forgotten = [mission("m2", free_places=2)]  # published a month ago, nobody applied
    figures = department_figures([], forgotten, MONDAY, thresholds)
    assert [e.kind for e in reassess(Territory("56"), figures, thresholds)] == ["missions_without_candidates"]
    recent = [mission("m2", free_places=2, last_candidate_on=MONDAY - timedelta(days=2))]
    assert reassess(Territory("56"), department_figures([], recent, MONDAY, thresholds), thresholds) == []


def test_a_volunteer_is_idle_once_per_period():
    v = volunteer(registered_on=MONDAY - timedelta(days=14))
    assert is_idle(v, set(), MONDAY, 14)
    assert not is_idle(volunteer(registered_on=MONDAY - timedelta(days=13)), set(), MONDAY, 14)
    idle = VolunteerIdle(
        volunteer_id="v1", period="2026-11", department="56", days_since_sign_up=14, nearby_mission_ids=[]
    )
    periods = Outreach.replay("v1", [idle]).idle_periods
    assert not is_idle(v, periods, MONDAY, 14)
    assert is_idle(v, periods, date(2026, 12, 1), 14)
    v.accepted.add("m1")
    assert not is_idle(v, set(), MONDAY, 14)
