from datetime import date

import pytest

from services.volunteers import domain
from services.volunteers.domain import Candidate, OpenMission, Roster
from shared.contracts.volunteers import age_on, normalize_mobile
from shared.errors import Refusal
from shared.events import (
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    VolunteerLeftWaitlist,
    VolunteerWaitlisted,
)

ON_SITE = OpenMission("m1", "o1", "published", places=2, remote=False, open_to_minors=False)
REMOTE = OpenMission("m1", "o1", "published", places=2, remote=True, open_to_minors=False)
ADULT, SENIOR, FRAGILE, MINOR = (
    Candidate("a", 30, False),
    Candidate("s", 72, False),
    Candidate("f", 40, True),
    Candidate("k", 16, False),
)


def code(call) -> str:
    with pytest.raises(Refusal) as refusal:
        call()
    return refusal.value.code


def received(app_id: str, volunteer: str) -> ApplicationReceived:
    return ApplicationReceived(application_id=app_id, mission_id="m1", volunteer_id=volunteer, organization_id="o1")


def accepted(app_id: str, volunteer: str) -> ApplicationAccepted:
    return ApplicationAccepted(application_id=app_id, mission_id="m1", volunteer_id=volunteer, organization_id="o1")


def roster(*events) -> Roster:
    return Roster.replay("m1", list(events))


FULL = roster(received("x1", "v1"), accepted("x1", "v1"), received("x2", "v2"), accepted("x2", "v2"))


EMPTY = Roster("m1")


def apply(r=EMPTY, mission=ON_SITE, candidate=ADULT, pending=0, crisis=True):
    return domain.apply_to(r, mission, candidate, "new", None, pending, 5, crisis)


@pytest.mark.parametrize(
    ("born", "today", "age", "bracket"),
    [
        (date(2010, 3, 1), date(2026, 2, 28), 15, None),
        (date(2010, 3, 1), date(2026, 3, 1), 16, "16-17"),
        (date(1956, 6, 1), date(2026, 6, 1), 70, "70+"),
        (date(1990, 1, 1), date(2026, 1, 1), 36, "35-49"),
    ],
)
def test_ages_and_brackets(born, today, age, bracket):
    assert age_on(born, today) == age
    if bracket:
        assert domain.age_bracket(age) == bracket


@pytest.mark.parametrize(
    ("phone", "normal"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("+33 7 12 34 56 78", "+33712345678"),
        ("0033612345678", "+33612345678"),
        ("01 23 45 67 89", None),
        ("06 12 34", None),
        ("06.12.34.56.78", "+33612345678"),
    ],
)
def test_french_mobile_numbers(phone, normal):
    assert normalize_mobile(phone) == normal


def test_applying_allowed_and_refused():
    assert [type(e) for e in apply()] == [ApplicationReceived]
    assert code(lambda: apply(mission=OpenMission("m1", "o1", "closed", 2, False, False))) == "mission_not_open"
    assert code(lambda: apply(r=roster(received("x", "a")))) == "already_applied"
    assert code(lambda: apply(r=FULL)) == "mission_full"
    assert code(lambda: apply(pending=5)) == "too_many_applications"


def test_the_same_application_request_carried_out_again_applies_once():
    applied = roster(received("new", "a"))
    assert apply(r=applied) == []  # its own application, by its id: nothing more, not a refusal
    closed = OpenMission("m1", "o1", "closed", 2, False, False)
    assert apply(r=applied, mission=closed) == []  # even once the mission closed meanwhile
    assert code(lambda: apply(r=roster(received("other", "a")))) == "already_applied"


def test_crisis_mode_keeps_seniors_and_fragile_people_on_remote_missions():
    for candidate in (SENIOR, FRAGILE):
        assert code(lambda c=candidate: apply(candidate=c)) == "onsite_not_allowed_in_crisis"
        assert apply(candidate=candidate, mission=REMOTE)
        assert apply(candidate=candidate, crisis=False)
    assert code(lambda: apply(candidate=MINOR)) == "minors_not_accepted"
    assert apply(candidate=MINOR, mission=OpenMission("m1", "o1", "published", 2, False, True))


def test_accepting_stops_at_the_number_of_places():
    one_left = roster(received("x1", "v1"), accepted("x1", "v1"), received("x2", "v2"), received("x3", "v3"))
    assert [type(e) for e in domain.accept(one_left, ON_SITE, "x2")] == [ApplicationAccepted]
    after = one_left.apply(domain.accept(one_left, ON_SITE, "x2")[0])
    assert code(lambda: domain.accept(after, ON_SITE, "x3")) == "mission_full"
    assert code(lambda: domain.accept(after, ON_SITE, "x2")) == "application_not_pending"
    assert code(lambda: domain.accept(after, ON_SITE, "nope")) == "application_not_found"


def test_refusing_and_withdrawing():
    assert isinstance(domain.refuse(FULL, ON_SITE, "x1", "change_mind", None)[0], ApplicationRefused)
    withdrawn = domain.withdraw(FULL, ON_SITE, "x1", "v1", "not_available", None)
    assert isinstance(withdrawn[0], ApplicationWithdrawn)
    assert code(lambda: domain.withdraw(FULL, ON_SITE, "x1", "someone-else", "other", None)) == "application_not_found"
    closed = FULL.apply(withdrawn[0])
    assert code(lambda: domain.withdraw(closed, ON_SITE, "x1", "v1", "other", None)) == "application_closed"
    assert code(lambda: domain.refuse(closed, ON_SITE, "x1", "other", None)) == "application_closed"


def test_the_waitlist_only_when_full_in_order_and_promotion_skips_the_ineligible():
    assert code(lambda: domain.join_waitlist(roster(), ON_SITE, ADULT, True)) == "places_left"
    r = FULL
    for candidate in (SENIOR, ADULT, Candidate("b", 25, False)):
        if candidate is SENIOR:
            assert code(lambda r=r: domain.join_waitlist(r, ON_SITE, SENIOR, True)) == "onsite_not_allowed_in_crisis"
            r = r.apply(VolunteerWaitlisted(mission_id="m1", volunteer_id="s", organization_id="o1"))  # joined before
            continue
        r = r.apply(domain.join_waitlist(r, ON_SITE, candidate, True)[0])
    assert r.waitlist == ("s", "a", "b")
    assert code(lambda: domain.join_waitlist(r, ON_SITE, ADULT, True)) == "already_applied"
    assert domain.promote(r, ON_SITE, {"s": SENIOR, "a": ADULT, "b": Candidate("b", 25, False)}, True, "p") == []
    freed = r.apply(domain.withdraw(r, ON_SITE, "x1", "v1", "other", None)[0])
    promoted = domain.promote(freed, ON_SITE, {"s": SENIOR, "a": ADULT, "b": Candidate("b", 25, False)}, True, "p")
    assert [(type(e), e.volunteer_id, e.promoted_from_waitlist) for e in promoted] == [(ApplicationReceived, "a", True)]
    assert freed.apply(promoted[0]).waitlist == ("s", "b")
    left = domain.leave_waitlist(r, ON_SITE, "b")
    assert isinstance(left[0], VolunteerLeftWaitlist) and r.apply(left[0]).waitlist == ("s", "a")
    assert code(lambda: domain.leave_waitlist(roster(), ON_SITE, "b")) == "not_on_waitlist"


def test_a_mission_ending_ends_pending_applications_and_the_waitlist():
    r = roster(
        received("x1", "v1"),
        accepted("x1", "v1"),
        received("x2", "v2"),
        VolunteerWaitlisted(mission_id="m1", volunteer_id="w", organization_id="o1"),
    )
    closed = domain.close_roster(r, ON_SITE, "closed")
    assert [(type(e).__name__, getattr(e, "reason", None)) for e in closed] == [
        ("ApplicationRefused", "mission_closed"),
        ("VolunteerLeftWaitlist", "mission_closed"),
    ]
    cancelled = domain.close_roster(r, ON_SITE, "cancelled")
    assert isinstance(cancelled[0], ApplicationCancelled) and cancelled[0].reason == "mission_cancelled"
    after = r
    for event in closed:
        after = after.apply(event)
    assert domain.close_roster(after, ON_SITE, "closed") == []  # redelivered: nothing more


def test_erasure_cancels_the_live_application_and_leaves_the_waitlist():
    r = FULL.apply(VolunteerWaitlisted(mission_id="m1", volunteer_id="v3", organization_id="o1"))
    assert [e.reason for e in domain.erase_from(r, ON_SITE, "v1")] == ["volunteer_erased"]
    assert [type(e) for e in domain.erase_from(r, ON_SITE, "v3")] == [VolunteerLeftWaitlist]
    assert domain.erase_from(r, ON_SITE, "nobody") == []
