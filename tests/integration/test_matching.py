"""The matching service on both backends: search, recommendations both ways, invitation caps, territory
figures and imbalances, idle volunteers, role scoping, and redelivered events changing nothing."""

from datetime import date, timedelta

import httpx
import pytest

from services.matching import service as matching_service
from services.matching.handlers import MatchingHandlers
from shared.events import (
    Actor,
    ApplicationAccepted,
    ApplicationReceived,
    Event,
    MissionFilled,
    MissionPlacesChanged,
    MissionPublished,
    OrganizationRegistered,
    ReferentAppointed,
    TerritoryImbalanceDetected,
    VolunteerIdle,
    VolunteerRegistered,
    outreach_stream,
    territory_stream,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions, Sealed
from shared.geo import postal_area
from shared.runtime.app import create_app
from shared.runtime.ports import OutgoingMessage
from shared.runtime.streams import load_stream
from tests.conftest import eventually, service_headers

MANAGER, OTHER_MANAGER = Actor(id="manager-1", role="manager"), Actor(id="manager-2", role="manager")
REFERENT, ADMIN = Actor(id="ref-56", role="referent"), Actor(id="admin", role="admin")
TODAY = date.today()
SEALED = Sealed(key_id="k", ciphertext="eA==")


def published(mission_id: str, postal_code: str | None, *, domain="food_and_emergency_aid", places=3, start=None):
    area = postal_area(postal_code) if postal_code else None
    content = MissionContent(
        title=f"Mission {mission_id}",
        description="Distribuer des repas chauds aux personnes isolées.",
        domain=domain,
        remote=area is None,
        department=area.department if area else "56",
        places=places,
        start_date=start,
        place=Place(
            postal_code=postal_code,
            department=area.department,
            commune=area.main_commune.name,
            latitude=area.latitude,
            longitude=area.longitude,
        )
        if area
        else None,
        safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True) if area else None,
    )
    return MissionPublished(mission_id=mission_id, organization_id="org-1", content=content, free_places=places)


def registered(volunteer_id: str, postal_code: str, **change) -> VolunteerRegistered:
    values = dict(
        volunteer_id=volunteer_id,
        personal=SEALED,
        postal_code=postal_code,
        department=postal_area(postal_code).department,
        age_bracket="25-34",
        domains=["food_and_emergency_aid"],
        availability=["weekends"],
        mode="both",
        max_distance_km=30,
        onsite_restricted=False,
        visible_to_organizations=True,
    )
    return VolunteerRegistered(**(values | change))


class Matching:
    def __init__(self, client: httpx.AsyncClient, app) -> None:
        self.client, self.app = client, app
        self.versions: dict[str, int] = {}
        self.sent: list[OutgoingMessage] = []

    @property
    def handlers(self) -> MatchingHandlers:
        return self.app.state.runtime.context("matching").component(MatchingHandlers)

    async def get(self, actor: Actor | None, path: str, **params) -> httpx.Response:
        return await self.client.get(path, headers=service_headers(self.app, actor), params=params)

    async def post(self, actor: Actor, path: str, **json) -> httpx.Response:
        return await self.client.post(path, headers=service_headers(self.app, actor), json=json)

    async def say(self, *events: Event) -> None:
        """What the other services would publish, on the bus, each stream in order."""
        messages = []
        for event in events:
            stream = event.stream_id()
            self.versions[stream] = self.versions.get(stream, 0) + 1
            messages.append(OutgoingMessage.of(event.envelope(self.versions[stream])))
        self.sent += messages
        await self.app.state.runtime.bus.publish(messages)

    async def settled(self, check, what: str):
        """Poll a query until `check` holds on its answer."""
        seen = {}

        async def holds() -> bool:
            seen["answer"] = await check()
            return seen["answer"] is not None

        await eventually(holds, what=what)
        return seen["answer"]


@pytest.fixture
async def matching(settings):
    app = create_app(settings.model_copy(update={"index_refresh_s": 0.05}), [matching_service])
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client,
    ):
        world = Matching(client, app)
        await world.say(
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
        )
        yield world


async def search(matching: Matching, count: int, **params) -> dict:
    async def answer():
        found = (await matching.get(None, "/matching/missions", **params)).json()
        return found if found.get("total") == count else None

    return await matching.settled(answer, f"{count} missions for {params}")


async def test_search_by_radius_text_domain_and_dates_nearest_first(matching):
    await matching.say(
        published("lorient", "56100", start=TODAY + timedelta(days=3)),
        published("vannes-later", "56000", start=TODAY + timedelta(days=9)),
        published("vannes-soon", "56000", start=TODAY + timedelta(days=1)),
        published("ajaccio", "20000"),
        published("reunion", "97400", domain="emergency_childcare"),
        published("phone", None, domain="keeping_in_touch"),
    )
    found = await search(matching, 4, postal_code="56000", radius_km=50)
    assert [m["id"] for m in found["missions"]] == ["vannes-soon", "vannes-later", "lorient", "phone"]
    assert found["missions"][2]["distance_km"] > 40 and found["missions"][3]["distance_km"] is None
    within_default_radius = await search(matching, 3, postal_code="56000")  # 35 km: Lorient is 47 km away
    assert [m["id"] for m in within_default_radius["missions"]] == ["vannes-soon", "vannes-later", "phone"]
    assert [
        m["id"] for m in (await search(matching, 2, postal_code="56000", radius_km=5, remote="false"))["missions"]
    ] == [
        "vannes-soon",
        "vannes-later",
    ]
    assert [m["id"] for m in (await search(matching, 1, postal_code="20000", remote="false"))["missions"]] == [
        "ajaccio"
    ]
    assert (await search(matching, 1, postal_code="97400", domain="emergency_childcare"))["missions"][0]["id"] == (
        "reunion"
    )
    assert (await search(matching, 1, text="REPAS chauds lorient"))["missions"][0]["id"] == "lorient"
    page = await search(matching, 6, per_page=2, page=2)
    assert len(page["missions"]) == 2
    soon = await search(matching, 1, postal_code="56000", remote="false", end=(TODAY + timedelta(days=5)).isoformat())
    assert soon["missions"][0]["id"] == "vannes-soon"

    for params, code in [
        ({"postal_code": "5600"}, "invalid_postal_code"),
        ({"postal_code": "75700"}, "unknown_postal_code"),
        ({"latitude": "47.6"}, "incomplete_coordinates"),
        ({"radius_km": "-3"}, "invalid_request"),
        ({"start": "2026-12-10", "end": "2026-12-01"}, "invalid_dates"),
    ]:
        answer = await matching.get(None, "/matching/missions", **params)
        assert answer.status_code == 422 and answer.json()["code"] == code, (params, answer.text)

    await matching.say(MissionFilled(mission_id="vannes-soon", organization_id="org-1"))
    await search(matching, 1, postal_code="56000", radius_km=5, remote="false")  # a full mission leaves the results


async def test_recommendations_for_a_volunteer_with_the_reason(matching):
    await matching.say(
        published("vannes", "56000"),
        published("lorient", "56100"),
        published("childcare", "56000", domain="emergency_childcare"),
        published("phone", None),
        registered("v1", "56000"),
        registered("minor", "56000", age_bracket="16-17"),
        ApplicationReceived(application_id="a1", mission_id="phone", volunteer_id="v1", organization_id="org-1"),
    )
    volunteer = Actor(id="v1", role="volunteer")

    async def recommended():
        answer = await matching.get(volunteer, "/matching/volunteers/v1/missions")
        return (
            answer.json() if answer.status_code == 200 and answer.json() and "phone" not in str(answer.json()) else None
        )

    found = await matching.settled(recommended, "recommendations for v1")
    # Lorient is 47 km away, beyond the volunteer's 30 km; childcare is not their domain; they applied to "phone"
    assert [(m["id"], m["reason"]) for m in found] == [("vannes", "à moins d’1 km, aide alimentaire et d’urgence")]
    minor = Actor(id="minor", role="volunteer")

    async def minor_known():
        answer = await matching.get(minor, "/matching/volunteers/minor/missions")
        return answer.json() if answer.status_code == 200 else None

    assert await matching.settled(minor_known, "the minor volunteer indexed") == []  # no mission open to minors
    other = await matching.get(Actor(id="v2", role="volunteer"), "/matching/volunteers/v1/missions")
    assert (other.status_code, other.json()["code"]) == (403, "not_your_profile")
    assert (await matching.get(None, "/matching/volunteers/v1/missions")).status_code == 401
    assert (await matching.get(ADMIN, "/matching/volunteers/nobody/missions")).status_code == 404


async def test_organisations_find_and_invite_volunteers_within_the_caps(matching):
    await matching.say(
        published("m1", "56000"),
        published("m2", "56000"),
        published("m3", "56000"),
        registered("near", "56000"),
        registered("other-domain", "56000", domains=["keeping_in_touch"]),
        registered("hidden", "56000", visible_to_organizations=False),
        registered("far", "75001"),
        registered("short-reach", "56100", max_distance_km=10),
    )

    async def suggested():
        answer = await matching.get(MANAGER, "/matching/missions/m1/volunteers")
        return answer.json() if answer.status_code == 200 and len(answer.json()) == 2 else None

    found = await matching.settled(suggested, "volunteers for m1")
    await search(matching, 3, postal_code="56000", remote="false")  # the three missions are indexed
    assert [v["volunteer_id"] for v in found] == ["near", "other-domain"]  # their domain first
    assert set(found[0]) == {"volunteer_id", "department", "distance_km", "domains", "availability", "mode"}
    for actor, status in [(OTHER_MANAGER, 403), (REFERENT, 403), (Actor(id="near", role="volunteer"), 403)]:
        assert (await matching.get(actor, "/matching/missions/m1/volunteers")).status_code == status

    assert (await matching.post(MANAGER, "/matching/missions/m1/invitations", volunteer_id="near")).status_code == 201
    again = await matching.post(MANAGER, "/matching/missions/m1/invitations", volunteer_id="near")
    assert (again.status_code, again.json()["code"]) == (409, "already_invited")
    assert (await matching.post(MANAGER, "/matching/missions/m2/invitations", volunteer_id="near")).status_code == 201
    third = await matching.post(MANAGER, "/matching/missions/m3/invitations", volunteer_id="near")
    assert (third.status_code, third.json()["code"]) == (429, "invitation_limit_reached")
    assert "deux sollicitations" in third.json()["detail"]
    hidden = await matching.post(MANAGER, "/matching/missions/m1/invitations", volunteer_id="hidden")
    assert hidden.status_code == 404
    scoped = await matching.post(OTHER_MANAGER, "/matching/missions/m1/invitations", volunteer_id="far")
    assert scoped.status_code == 403
    history, _ = await load_stream(matching.handlers.store, outreach_stream("near"))
    assert [e.mission_id for e in history] == ["m1", "m2"]  # refusals appended nothing


async def test_territory_figures_imbalances_and_idle_volunteers(matching, settings):
    long_ago = TODAY - timedelta(days=40)
    await matching.say(
        published("m1", "56000", places=1),
        *(registered(f"v{n}", "56000") for n in range(40)),
        registered("busy", "56000"),
        ApplicationReceived(application_id="a1", mission_id="m1", volunteer_id="busy", organization_id="org-1"),
        ApplicationAccepted(application_id="a1", mission_id="m1", volunteer_id="busy", organization_id="org-1"),
    )

    async def figures():
        answer = await matching.get(REFERENT, "/matching/territories/56")
        if answer.status_code != 200:  # the referent's appointment is not projected yet
            return None
        food = next(d for d in answer.json()["domains"] if d["domain"] == "food_and_emergency_aid")
        busy = matching.handlers.index.volunteers.get("busy")
        settled = food["volunteers"] == 40 and food["open_places"] == 1 and busy is not None and busy.accepted
        return answer.json() if settled else None

    territory = await matching.settled(figures, "the territory of 56")
    food = next(d for d in territory["domains"] if d["domain"] == "food_and_emergency_aid")
    assert food["volunteers_per_place"] == 40.0  # the volunteer with an accepted application is not available
    assert [i["kind"] for i in territory["imbalances"]] == ["too_many_volunteers"]
    assert (await matching.get(Actor(id="ref-75", role="referent"), "/matching/territories/56")).status_code == 403
    assert (await matching.get(MANAGER, "/matching/territories/56")).status_code == 403
    assert (await matching.get(REFERENT, "/matching/territories/5X")).status_code == 422

    handlers = matching.handlers
    raised = await handlers.assess_territory("56")
    assert [(type(e), e.kind) for e in raised] == [(TerritoryImbalanceDetected, "too_many_volunteers")]
    assert await handlers.assess_territory("56") == []  # once, not at every run
    history, _ = await load_stream(handlers.store, territory_stream("56"))
    assert len(history) == 1

    day = TODAY + timedelta(days=20)  # every volunteer signed up today: idle in 14 days
    assert await handlers.detect_idle(day) == 40
    assert await handlers.detect_idle(day) == 0  # once per period
    outreach, _ = await load_stream(handlers.store, outreach_stream("v1"))
    assert isinstance(outreach[0], VolunteerIdle) and outreach[0].nearby_mission_ids == ["m1"]
    assert long_ago < day


async def test_search_and_territory_show_the_places_left_after_each_acceptance(matching):
    await matching.say(published("m1", "56000", places=3))
    await search(matching, 1, postal_code="56000")

    async def places_left(free: int) -> None:
        async def shown():
            found = (await matching.get(None, "/matching/missions", postal_code="56000")).json()["missions"]
            territory = await matching.get(REFERENT, "/matching/territories/56")  # 403 until the referent is known
            domains = territory.json()["domains"] if territory.status_code == 200 else []
            open_places = [d["open_places"] for d in domains if d["domain"] == "food_and_emergency_aid"]
            return True if [m["free_places"] for m in found] == [free] and open_places == [free] else None

        await matching.settled(shown, f"{free} places left")

    await matching.say(MissionPlacesChanged(mission_id="m1", organization_id="org-1", free_places=2))
    await places_left(2)
    await matching.say(MissionPlacesChanged(mission_id="m1", organization_id="org-1", free_places=1))
    await places_left(1)
    await matching.say(MissionPlacesChanged(mission_id="m1", organization_id="org-1", free_places=3))  # withdrawals
    await places_left(3)


async def test_redelivered_events_change_nothing(matching):
    await matching.say(published("m1", "56000"), registered("v1", "56000"))
    await search(matching, 1, postal_code="56000", remote="false")
    volunteer = Actor(id="v1", role="volunteer")

    async def volunteer_known():
        return (await matching.get(volunteer, "/matching/volunteers/v1/missions")).status_code == 200 or None

    await matching.settled(volunteer_known, "v1 indexed")
    documents = matching.handlers.documents
    before = {c: await documents.find(c) for c in ("missions", "volunteers", "applications")}
    await matching.app.state.runtime.bus.publish(matching.sent)  # everything again
    await matching.say(MissionFilled(mission_id="m1", organization_id="org-1"))  # then something new
    await search(matching, 0, postal_code="56000", remote="false")
    after = await documents.find("volunteers")
    assert [(d["id"], d["version"]) for d in after] == [(d["id"], d["version"]) for d in before["volunteers"]]
    assert len(await documents.find("missions")) == 1
