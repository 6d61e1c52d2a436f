"""The matching handlers on the in-memory stores: invitation caps, who may invite or read a territory, search."""

from datetime import date
from functools import partial

import pytest

from services.matching import projections
from services.matching.handlers import MatchingHandlers
from services.matching.projections import MatchingIndex
from shared.contracts.matching import MissionSearch
from shared.errors import Conflict, Forbidden, Invalid, LimitReached
from shared.events import (
    Actor,
    Event,
    MissionPublished,
    OrganizationRegistered,
    ReferentAppointed,
    VolunteerRegistered,
    outreach_stream,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions, Sealed
from shared.geo import postal_area
from shared.runtime.streams import load_stream
from tests.conftest import in_memory_context

MANAGER, OTHER_MANAGER = Actor(id="manager-1", role="manager"), Actor(id="manager-2", role="manager")
REFERENT = Actor(id="ref-56", role="referent")


def published(mission_id: str, postal_code: str = "56000") -> MissionPublished:
    area = postal_area(postal_code)
    content = MissionContent(
        title=f"Mission {mission_id}",
        description="Distribuer des repas chauds.",
        domain="food_and_emergency_aid",
        remote=False,
        department=area.department,
        places=3,
        place=Place(
            postal_code=postal_code,
            department=area.department,
            commune=area.main_commune.name,
            latitude=area.latitude,
            longitude=area.longitude,
        ),
        safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
    )
    return MissionPublished(mission_id=mission_id, organization_id="org-1", content=content, free_places=3)


def registered(volunteer_id: str) -> VolunteerRegistered:
    return VolunteerRegistered(
        volunteer_id=volunteer_id,
        personal=Sealed(key_id="k", ciphertext="eA=="),
        postal_code="56000",
        department="56",
        age_bracket="25-34",
        domains=["food_and_emergency_aid"],
        availability=["weekends"],
        mode="both",
        max_distance_km=30,
        onsite_restricted=False,
        visible_to_organizations=True,
    )


@pytest.fixture
async def handlers() -> MatchingHandlers:
    """Handlers over in-memory stores and their own index, fed what the other services would publish."""
    ctx = in_memory_context("matching")
    documents = ctx.documents
    on = {
        MissionPublished: partial(projections.on_mission_event, documents),
        VolunteerRegistered: partial(projections.on_volunteer_event, documents),
        OrganizationRegistered: partial(projections.on_organization_registered, documents),
        ReferentAppointed: partial(projections.on_referent_event, documents),
    }
    events: list[Event] = [
        OrganizationRegistered(
            organization_id="org-1",
            name="Secours",
            kind="association",
            rna="W561000123",
            postal_code="56000",
            department="56",
            manager_ids=[MANAGER.id],
        ),
        ReferentAppointed(referent_id=REFERENT.id, departments=["56"]),
        *(published(m) for m in ("m1", "m2", "m3")),
        published("ajaccio", "20000"),
        registered("v1"),
    ]
    for event in events:
        await on[type(event)](event, event.envelope(1))
    found = MatchingHandlers(ctx, MatchingIndex())
    await found.index.refresh(documents)
    return found


async def test_a_volunteer_is_invited_once_per_mission_and_twice_a_month(handlers):
    sent = await handlers.invite("m1", "v1", MANAGER)
    assert (sent.mission_id, sent.volunteer_id, sent.invited_on) == ("m1", "v1", date.today())
    with pytest.raises(Conflict) as again:
        await handlers.invite("m1", "v1", MANAGER)
    assert again.value.code == "already_invited"
    await handlers.invite("m2", "v1", MANAGER)
    with pytest.raises(LimitReached) as third:
        await handlers.invite("m3", "v1", MANAGER)
    assert third.value.code == "invitation_limit_reached"
    history, _ = await load_stream(handlers.store, outreach_stream("v1"))
    assert [e.mission_id for e in history] == ["m1", "m2"]


@pytest.mark.parametrize(
    ("actor", "code"),
    [
        (OTHER_MANAGER, "not_your_organization"),
        (REFERENT, "role_not_allowed"),
        (Actor(id="v1", role="volunteer"), "role_not_allowed"),
    ],
)
async def test_only_the_missions_managers_suggest_and_invite(handlers, actor, code):
    for ask in (handlers.recommend_volunteers("m1", actor), handlers.invite("m1", "v1", actor)):
        with pytest.raises(Forbidden) as refused:
            await ask
        assert refused.value.code == code
    assert [v.volunteer_id for v in await handlers.recommend_volunteers("m1", MANAGER)] == ["v1"]


async def test_territories_and_recommendations_are_scoped(handlers):
    assert (await handlers.territory("56", REFERENT)).department == "56"
    for department, actor, code in [
        ("75", REFERENT, "not_your_department"),
        ("56", Actor(id="ref-75", role="referent"), "not_your_department"),
        ("56", MANAGER, "role_not_allowed"),
    ]:
        with pytest.raises(Forbidden) as refused:
            await handlers.territory(department, actor)
        assert refused.value.code == code
    with pytest.raises(Forbidden) as other:
        handlers.recommend_missions("v1", Actor(id="v2", role="volunteer"))
    assert other.value.code == "not_your_profile"
    assert {m.id for m in handlers.recommend_missions("v1", Actor(id="v1", role="volunteer"))} == {"m1", "m2", "m3"}


async def test_search_around_a_postal_code_and_its_refusals(handlers):
    page = handlers.search(MissionSearch(postal_code="20000"))
    assert (page.total, [m.id for m in page.missions]) == (1, ["ajaccio"])
    for query, code in [
        (MissionSearch(latitude=47.6), "incomplete_coordinates"),
        (MissionSearch(postal_code="5600"), "invalid_postal_code"),
        (MissionSearch(postal_code="75700"), "unknown_postal_code"),
        (MissionSearch(start=date(2026, 12, 10), end=date(2026, 12, 1)), "invalid_dates"),
    ]:
        with pytest.raises(Invalid) as refused:
            handlers.search(query)
        assert refused.value.code == code
