from datetime import UTC, date, datetime

import pytest

from services.missions import domain
from services.missions.domain import Mission
from shared.errors import Conflict, Invalid, Refusal
from shared.events import (
    MissionCancelled,
    MissionClosed,
    MissionDrafted,
    MissionEdited,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionReopened,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationRegistered,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions

ON_SITE = MissionContent(
    title="Courses pour les voisins",
    description="Faire les courses des personnes fragiles du quartier.",
    domain="neighbourhood_solidarity",
    remote=False,
    department="56",
    place=Place(postal_code="56000", department="56", commune="Vannes"),
    places=2,
    end_date=date(2026, 5, 31),
    safety=SafetyConditions(distancing=True, protective_equipment=False, supervision=False),
)
REMOTE = MissionContent(
    title="Appels aux aînés",
    description="Téléphoner aux personnes isolées.",
    domain="keeping_in_touch",
    remote=True,
    department="29",
    places=10,
)


NOW = datetime(2026, 5, 1, 10, tzinfo=UTC)  # a month before ON_SITE's end


def replay(*events) -> Mission:
    return Mission.replay("m1", list(events))


DRAFTED = MissionDrafted(mission_id="m1", organization_id="o1", content=ON_SITE)


def submitted(policy="pre"):
    return MissionSubmitted(mission_id="m1", organization_id="o1", content=ON_SITE, moderation=policy)


def moderated(decision):
    return MissionModerated(mission_id="m1", organization_id="o1", decision=decision)


PUBLISHED = MissionPublished(mission_id="m1", organization_id="o1", content=ON_SITE, free_places=2)


def states():
    """One mission in each state, built from events only."""
    return {
        "draft": replay(DRAFTED),
        "submitted": replay(DRAFTED, submitted()),
        "changes_requested": replay(DRAFTED, submitted(), moderated("changes_requested")),
        "refused": replay(DRAFTED, submitted(), moderated("refused")),
        "validated": replay(DRAFTED, submitted(), moderated("validated")),
        "published": replay(DRAFTED, submitted(), moderated("validated"), PUBLISHED),
        "filled": replay(
            DRAFTED,
            submitted(),
            moderated("validated"),
            PUBLISHED,
            MissionFilled(mission_id="m1", organization_id="o1"),
        ),
        "closed": replay(
            DRAFTED,
            submitted(),
            moderated("validated"),
            PUBLISHED,
            MissionClosed(mission_id="m1", organization_id="o1", reason="ended"),
        ),
        "cancelled": replay(DRAFTED, MissionCancelled(mission_id="m1", organization_id="o1", reason="plus utile")),
    }


def test_replay_reaches_every_state():
    assert {name: m.status for name, m in states().items()} == {name: name for name in states()}


def allowed_from(command, *statuses):
    for name, mission in states().items():
        if name in statuses:
            assert command(mission), name
        else:
            with pytest.raises(Refusal) as refusal:
                command(mission)
            assert refusal.value.code == "invalid_transition", name
            assert isinstance(refusal.value, Conflict)


def test_edit_only_a_draft_or_a_mission_sent_back():
    allowed_from(lambda m: domain.edit_mission(m, REMOTE, NOW), "draft", "changes_requested")
    assert isinstance(domain.edit_mission(states()["draft"], REMOTE, NOW)[0], MissionEdited)


def test_submit_only_a_draft_or_a_mission_sent_back():
    allowed_from(lambda m: domain.submit_mission(m, "pre", True, NOW), "draft", "changes_requested")


def test_close_only_a_live_validated_mission():
    allowed_from(domain.close_mission, "validated", "published", "filled")


def test_cancel_any_live_mission_with_a_reason():
    allowed_from(lambda m: domain.cancel_mission(m, "Plus de besoin"), *domain.LIVE)
    with pytest.raises(Refusal, match="reason_required"):
        domain.cancel_mission(states()["draft"], "  ")


def test_pre_moderation_waits_for_validation_then_for_the_organisation():
    events = domain.submit_mission(states()["draft"], "pre", organization_approved=True, now=NOW)
    assert [type(e) for e in events] == [MissionSubmitted]
    mission = states()["submitted"]
    events = domain.apply_decision(mission, "validated", None, None, organization_approved=False, now=NOW)
    assert [type(e) for e in events] == [MissionModerated]
    validated = mission.apply(events[0])
    assert domain.publish_if_ready(validated, organization_approved=False, now=NOW) == []
    published = domain.publish_if_ready(validated, organization_approved=True, now=NOW)
    assert [type(e) for e in published] == [MissionPublished]
    events = domain.apply_decision(mission, "validated", None, None, organization_approved=True, now=NOW)
    assert [type(e) for e in events] == [MissionModerated, MissionPublished]


def test_post_moderation_publishes_at_once_and_a_refusal_unpublishes():
    events = domain.submit_mission(states()["draft"], "post", organization_approved=True, now=NOW)
    assert [type(e) for e in events] == [MissionSubmitted, MissionPublished]
    assert events[1].free_places == 2
    online = replay(DRAFTED, submitted("post"), PUBLISHED)
    events = domain.apply_decision(online, "refused", "unsafe_conditions", "Pas d’encadrement", True, NOW)
    assert [type(e) for e in events] == [MissionModerated, MissionUnpublished]
    assert online.apply(events[0]).status == "refused"
    events = domain.apply_decision(online, "validated", None, None, True, NOW)
    assert [type(e) for e in events] == [MissionModerated]
    assert online.apply(events[0]).status == "published"
    # post-moderated but organisation not approved: stays submitted until the approval
    waiting = replay(DRAFTED, submitted("post"))
    assert domain.publish_if_ready(waiting, False, NOW) == []
    assert [type(e) for e in domain.publish_if_ready(waiting, True, NOW)] == [MissionPublished]


def test_a_mission_published_again_keeps_the_places_its_accepted_volunteers_hold():
    validated = states()["validated"]
    again = domain.publish_if_ready(validated, True, NOW, accepted=1)
    assert [(type(e), getattr(e, "free_places", None)) for e in again] == [(MissionPublished, 1)]
    full = domain.publish_if_ready(validated, True, NOW, accepted=2)
    assert [type(e) for e in full] == [MissionPublished, MissionFilled]
    assert domain.submit_mission(states()["changes_requested"], "post", True, NOW, accepted=1)[1].free_places == 1


def test_a_decision_the_mission_already_reflects_changes_nothing():
    for name in ("draft", "changes_requested", "refused", "validated", "published", "closed", "cancelled"):
        assert domain.apply_decision(states()[name], "validated", None, None, True, NOW) == [], name


def test_capacity_follows_every_acceptance_withdrawal_and_cancellation():
    three_places = ON_SITE.model_copy(update={"places": 3})
    published = replay(
        MissionDrafted(mission_id="m1", organization_id="o1", content=three_places),
        MissionSubmitted(mission_id="m1", organization_id="o1", content=three_places, moderation="post"),
        MissionPublished(mission_id="m1", organization_id="o1", content=three_places, free_places=3),
    )
    assert domain.update_capacity(published, 0) == []
    one_taken = domain.update_capacity(published, 1)
    assert [(type(e), e.free_places) for e in one_taken] == [(MissionPlacesChanged, 2)]
    published = published.apply(one_taken[0])
    assert published.status == "published" and published.free_places == 2
    assert domain.update_capacity(published, 1) == []  # redelivered: nothing more
    two_taken = domain.update_capacity(published, 2)
    assert [(type(e), e.free_places) for e in two_taken] == [(MissionPlacesChanged, 1)]
    published = published.apply(two_taken[0])
    freed = domain.update_capacity(published, 0)  # two withdrawals handled at once
    assert [(type(e), e.free_places) for e in freed] == [(MissionPlacesChanged, 3)]


def test_capacity_fills_and_reopens():
    published, filled = states()["published"], states()["filled"]
    assert [type(e) for e in domain.update_capacity(published, 2)] == [MissionFilled]
    assert domain.update_capacity(filled, 2) == []
    reopened = domain.update_capacity(filled, 1)
    assert [type(e) for e in reopened] == [MissionReopened] and reopened[0].free_places == 1
    assert domain.update_capacity(states()["draft"], 5) == []


def test_missions_close_a_month_after_their_end_date():
    published = states()["published"]
    assert domain.close_if_ended(published, date(2026, 6, 29)) == []
    closed = domain.close_if_ended(published, date(2026, 6, 30))
    assert [type(e) for e in closed] == [MissionClosed] and closed[0].reason == "ended"
    assert domain.close_if_ended(states()["draft"], date(2027, 1, 1)) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"safety": None}, "safety"),
        ({"safety": SafetyConditions(distancing=False, protective_equipment=False, supervision=False)}, "safety"),
        ({"place": None}, "place"),
        ({"start_date": date(2026, 6, 1)}, "end_date"),
        ({"prerequisites": ["x" * 101]}, "prerequisites"),
    ],
)
def test_content_breaking_the_rules_is_refused(change, field):
    with pytest.raises(Refusal) as refusal:
        domain.draft_mission(Mission("m2"), "o1", ON_SITE.model_copy(update=change), NOW)
    assert isinstance(refusal.value, Invalid) and field in refusal.value.fields


def test_a_remote_mission_needs_no_place_nor_safety_and_a_mission_exists_once():
    assert [type(e) for e in domain.draft_mission(Mission("m2"), "o1", REMOTE, NOW)] == [MissionDrafted]
    with pytest.raises(Refusal, match="mission_exists"):
        domain.draft_mission(states()["draft"], "o1", REMOTE, NOW)


def dated(start: date | None, end: date | None, department: str = "56") -> MissionContent:
    return ON_SITE.model_copy(update={"start_date": start, "end_date": end, "department": department})


@pytest.mark.parametrize(
    ("start", "end", "fields"),
    [
        (date(2020, 1, 1), date(2020, 1, 15), {"start_date", "end_date"}),
        (None, date(2026, 4, 30), {"end_date"}),
        (date(2026, 4, 30), date(2026, 5, 31), {"start_date"}),
    ],
)
def test_a_mission_with_dates_already_past_is_refused(start, end, fields):
    with pytest.raises(Refusal) as refusal:
        domain.draft_mission(Mission("m2"), "o1", dated(start, end), NOW)
    assert (type(refusal.value), refusal.value.code, set(refusal.value.fields)) == (
        Invalid,
        "mission_dates_past",
        fields,
    )
    assert "déjà passée" in refusal.value.fields.popitem()[1]


def test_a_mission_may_start_and_end_today():
    today = NOW.date()
    assert [type(e) for e in domain.draft_mission(Mission("m2"), "o1", dated(today, today), NOW)] == [MissionDrafted]


def test_the_day_is_the_one_where_the_mission_takes_place():
    late_evening_in_guadeloupe = datetime(2026, 5, 1, 2, tzinfo=UTC)  # 04:00 in Paris, 22:00 the day before there
    yesterday_in_paris = date(2026, 4, 30)
    domain.draft_mission(Mission("m2"), "o1", dated(yesterday_in_paris, None, "971"), late_evening_in_guadeloupe)
    with pytest.raises(Refusal, match="mission_dates_past"):
        domain.draft_mission(Mission("m2"), "o1", dated(yesterday_in_paris, None, "56"), late_evening_in_guadeloupe)


def test_a_mission_that_has_begun_keeps_its_start_when_edited_but_not_an_end_already_past():
    begun = dated(date(2026, 4, 1), date(2026, 5, 31))
    sent_back = replay(
        MissionDrafted(mission_id="m1", organization_id="o1", content=begun),
        MissionSubmitted(mission_id="m1", organization_id="o1", content=begun),
        moderated("changes_requested"),
    )
    kept = domain.edit_mission(sent_back, dated(date(2026, 4, 1), date(2026, 6, 30)), NOW)
    assert [type(e) for e in kept] == [MissionEdited]
    with pytest.raises(Refusal) as moved:
        domain.edit_mission(sent_back, dated(date(2026, 3, 1), date(2026, 6, 30)), NOW)
    assert set(moved.value.fields) == {"start_date"}
    with pytest.raises(Refusal) as ended:
        domain.edit_mission(sent_back, dated(date(2026, 4, 1), date(2026, 4, 15)), NOW)
    assert (ended.value.code, set(ended.value.fields)) == ("mission_dates_past", {"end_date"})


def test_a_mission_whose_end_passed_meanwhile_is_neither_submitted_nor_published():
    after_the_end = datetime(2026, 6, 1, 10, tzinfo=UTC)
    with pytest.raises(Refusal) as refusal:
        domain.submit_mission(states()["draft"], "pre", True, after_the_end)
    assert (type(refusal.value), refusal.value.code) == (Invalid, "mission_dates_past")
    assert domain.publish_if_ready(states()["validated"], True, after_the_end) == []


def registration(**change) -> OrganizationRegistered:
    data = {
        "organization_id": "o1",
        "name": "Restos du Cœur 56",
        "kind": "association",
        "rna": "W561000123",
        "postal_code": "56000",
        "department": "56",
        "manager_ids": ["u1"],
    } | change
    return OrganizationRegistered(**data)


@pytest.mark.parametrize("siret", ["73282932000074", "35600000000048", "35600000012346", "21290019700014"])
def test_valid_siret_numbers(siret):
    assert domain.siret_is_valid(siret)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rna": None}, "siret"),
        ({"siret": "73282932000075"}, "siret"),
        ({"siret": "7328293200007"}, "siret"),
        ({"rna": "561000123"}, "rna"),
        ({"name": "  "}, "name"),
    ],
)
def test_organisations_with_bad_identity_numbers_are_refused(change, field):
    with pytest.raises(Refusal) as refusal:
        domain.register_organization(registration(**change))
    assert refusal.value.code == "invalid_organization" and field in refusal.value.fields


def test_a_valid_organisation_registers():
    assert domain.register_organization(registration(siret="73282932000074")) == [registration(siret="73282932000074")]
