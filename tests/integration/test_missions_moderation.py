"""Missions and moderation services together, on both backends: the publication flow in both
policies, territorial scoping role by role, concurrent decisions, redelivered decisions, free places
followed everywhere they show, dates already past."""

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.matching import service as matching_service
from services.missions import service as missions_service
from services.missions.domain import local_date
from services.missions.handlers import MissionsHandlers
from services.missions.projections import POLICIES
from services.moderation import service as moderation_service
from shared.events import (
    Actor,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationWithdrawn,
    Envelope,
    MissionEdited,
    MissionValidated,
)
from shared.events.vocabulary import MissionContent
from shared.runtime.app import create_app
from shared.runtime.ports import OutgoingMessage
from shared.runtime.streams import append_events
from tests.conftest import eventually, service_headers

ADMIN = Actor(id="admin-1", role="admin")
REFERENT_56 = Actor(id="ref-56", role="referent")
REFERENT_29 = Actor(id="ref-29", role="referent")
MANAGER_A = Actor(id="manager-a", role="manager")
MANAGER_B = Actor(id="manager-b", role="manager")
VOLUNTEER = Actor(id="vol-1", role="volunteer")

TODAY = local_date("56", datetime.now(UTC))  # the day it is in Vannes, where MISSION takes place
MISSION = {
    "title": "Distribution de colis alimentaires",
    "description": "Préparer et distribuer des colis aux familles de Vannes.",
    "domain": "food_and_emergency_aid",
    "remote": False,
    "place": {"address": "12 rue du Port", "postal_code": "56000"},
    "places": 4,
    "end_date": (TODAY + timedelta(days=60)).isoformat(),
    "safety": {"distancing": True, "protective_equipment": True, "supervision": False},
}


class Platform:
    def __init__(self, client: httpx.AsyncClient, app) -> None:
        self.client, self.app = client, app

    async def call(self, actor: Actor | None, method: str, path: str, **kwargs) -> httpx.Response:
        headers = service_headers(self.app, actor)
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, actor: Actor, method: str, path: str, **kwargs) -> dict | None:
        answer = await self.call(actor, method, path, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def documents(self, service: str):
        return self.app.state.runtime.context(service).documents

    async def until(self, actor: Actor, path: str, check, what: str) -> dict:
        seen: dict = {}

        async def holds() -> bool:
            answer = await self.call(actor, "GET", path)
            seen["last"] = answer.json()
            return answer.status_code == 200 and check(seen["last"])

        try:
            await eventually(holds, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {seen.get('last')}") from None
        return seen["last"]

    async def register_approved_organization(self, manager: Actor, postal_code: str, referent: Actor) -> str:
        created = await self.ok(
            manager,
            "POST",
            "/missions/organizations",
            json={
                "name": f"Banque alimentaire {postal_code}",
                "kind": "association",
                "rna": "W561000123",
                "postal_code": postal_code,
            },
        )
        organization_id = created["organization_id"]
        department = created["department"]
        await self.until(
            referent,
            f"/moderation/departments/{department}/queue",
            lambda q: any(e["id"] == organization_id for e in q),
            "the organisation in the queue",
        )
        await self.ok(
            referent, "POST", f"/moderation/organizations/{organization_id}/decision", json={"decision": "approve"}
        )
        return organization_id

    async def submitted_mission(
        self, manager: Actor, organization_id: str, referent: Actor, department: str, mission: dict
    ) -> str:
        """Draft and submit a mission; returns once it waits in the referent's queue."""
        drafted = await self.ok(manager, "POST", f"/missions/organizations/{organization_id}/missions", json=mission)
        mission_id = drafted["mission_id"]
        await self.ok(manager, "POST", f"/missions/missions/{mission_id}/submit")
        await self.until(
            referent,
            f"/moderation/departments/{department}/queue",
            lambda q: any(e["id"] == mission_id for e in q),
            "the mission in the queue",
        )
        return mission_id

    async def mission_status(self, actor: Actor, mission_id: str, status: str) -> dict:
        return await self.until(
            actor, f"/missions/missions/{mission_id}", lambda m: m.get("status") == status, f"mission {status}"
        )


@asynccontextmanager
async def running(settings, services):
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            platform = Platform(client, app)
            await platform.ok(ADMIN, "PUT", "/moderation/referents/ref-56", json={"departments": ["56"]})
            await platform.ok(ADMIN, "PUT", "/moderation/referents/ref-29", json={"departments": ["29", "2A"]})
            yield platform


@pytest.fixture
async def platform(settings):
    async with running(settings, [missions_service, moderation_service]) as platform:
        yield platform


@pytest.fixture
async def platform_with_search(settings):
    """With the matching service too: its search and territory figures show places."""
    fast_index = settings.model_copy(update={"index_refresh_s": 0.05})
    async with running(fast_index, [missions_service, moderation_service, matching_service]) as platform:
        yield platform


async def test_pre_moderation_a_mission_is_published_once_validated_and_counted(platform):
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    drafted = await platform.ok(MANAGER_A, "POST", f"/missions/organizations/{organization_id}/missions", json=MISSION)
    mission_id = drafted["mission_id"]
    await platform.ok(MANAGER_A, "POST", f"/missions/missions/{mission_id}/submit")

    queue = await platform.until(
        REFERENT_56,
        "/moderation/departments/56/queue",
        lambda q: any(e["id"] == mission_id for e in q),
        "the mission in the queue",
    )
    assert next(e for e in queue if e["id"] == mission_id)["kind"] == "mission"
    assert (await platform.call(None, "GET", f"/missions/missions/{mission_id}")).status_code == 404  # not public yet

    await platform.ok(REFERENT_56, "POST", f"/moderation/missions/{mission_id}/decision", json={"decision": "validate"})
    published = await platform.mission_status(VOLUNTEER, mission_id, "published")
    assert published["department"] == "56" and published["free_places"] == 4
    assert published["content"]["place"]["commune"] == "Vannes"

    dashboard = await platform.until(
        REFERENT_56,
        "/moderation/departments/56/dashboard",
        lambda d: d["missions_by_status"].get("published") == 1 and d["pending_moderation"]["missions"] == 0,
        "the dashboard",
    )
    assert dashboard["places"] == {"offered": 4, "filled": 0, "free": 4}
    assert dashboard["online_missions_by_domain"]["food_and_emergency_aid"] == 1
    assert dashboard["pending_moderation"]["oldest_age_hours"] is None
    assert dashboard["open_missions"] == 1
    national = await platform.ok(ADMIN, "GET", "/moderation/dashboard")
    assert national["missions_by_status"]["published"] >= 1


async def test_post_moderation_publishes_at_once_and_a_request_for_changes_unpublishes(platform):
    await platform.ok(ADMIN, "PUT", "/moderation/departments/56/policy", json={"policy": "post"})

    async def missions_knows_the_policy() -> bool:
        return (await platform.documents("missions").get(POLICIES, "56") or {}).get("policy") == "post"

    await eventually(missions_knows_the_policy, what="the policy in the missions service")
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    mission_id = (
        await platform.ok(MANAGER_A, "POST", f"/missions/organizations/{organization_id}/missions", json=MISSION)
    )["mission_id"]
    await platform.ok(MANAGER_A, "POST", f"/missions/missions/{mission_id}/submit")
    await platform.mission_status(VOLUNTEER, mission_id, "published")

    await platform.until(
        REFERENT_56,
        "/moderation/departments/56/queue",
        lambda q: any(e["id"] == mission_id for e in q),
        "the published mission to review",
    )
    await platform.ok(
        REFERENT_56,
        "POST",
        f"/moderation/missions/{mission_id}/decision",
        json={"decision": "request_changes", "comment": "Précisez l’encadrement."},
    )
    changed = await platform.mission_status(MANAGER_A, mission_id, "changes_requested")
    assert changed["review_comment"] == "Précisez l’encadrement."
    assert (await platform.call(None, "GET", f"/missions/missions/{mission_id}")).status_code == 404

    # edited and resubmitted: online again at once, and back in the queue
    await platform.ok(
        MANAGER_A,
        "PUT",
        f"/missions/missions/{mission_id}",
        json={**MISSION, "safety": {**MISSION["safety"], "supervision": True}},
    )
    await platform.ok(MANAGER_A, "POST", f"/missions/missions/{mission_id}/submit")
    await platform.mission_status(VOLUNTEER, mission_id, "published")


async def test_a_mission_of_an_organisation_not_yet_approved_waits_for_the_approval(platform):
    created = await platform.ok(
        MANAGER_B,
        "POST",
        "/missions/organizations",
        json={
            "name": "CCAS de Brest",
            "kind": "local_authority",
            "siret": "21290019700014",
            "postal_code": "29200",
        },
    )
    organization_id = created["organization_id"]
    mission_id = await platform.submitted_mission(
        MANAGER_B, organization_id, REFERENT_29, "29", {**MISSION, "place": {"postal_code": "29200"}}
    )
    await platform.ok(REFERENT_29, "POST", f"/moderation/missions/{mission_id}/decision", json={"decision": "validate"})
    await platform.mission_status(MANAGER_B, mission_id, "validated")

    await platform.ok(
        REFERENT_29, "POST", f"/moderation/organizations/{organization_id}/decision", json={"decision": "approve"}
    )
    await platform.mission_status(VOLUNTEER, mission_id, "published")


async def test_territorial_scoping_role_by_role(platform):
    org_a = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    org_b = await platform.register_approved_organization(MANAGER_B, "29200", REFERENT_29)
    mission_b = await platform.submitted_mission(
        MANAGER_B, org_b, REFERENT_29, "29", {**MISSION, "place": {"postal_code": "29200"}}
    )

    def expect(status: int, code: str):
        async def check(answer_coroutine) -> None:
            answer = await answer_coroutine
            assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text

        return check

    role_not_allowed, outside = expect(403, "role_not_allowed"), expect(403, "not_your_department")
    not_yours = expect(403, "not_your_organization")
    # a referent of 56 neither sees the queue of 29 nor decides on its missions
    await outside(platform.call(REFERENT_56, "GET", "/moderation/departments/29/queue"))
    await outside(platform.call(REFERENT_56, "GET", "/moderation/departments/29/dashboard"))
    await outside(
        platform.call(REFERENT_56, "POST", f"/moderation/missions/{mission_b}/decision", json={"decision": "validate"})
    )
    # a manager of A can neither edit, submit, cancel nor list B's missions
    await not_yours(platform.call(MANAGER_A, "PUT", f"/missions/missions/{mission_b}", json=MISSION))
    await not_yours(platform.call(MANAGER_A, "POST", f"/missions/missions/{mission_b}/cancel", json={"reason": "test"}))
    await not_yours(platform.call(MANAGER_A, "POST", f"/missions/organizations/{org_b}/missions", json=MISSION))
    await not_yours(platform.call(MANAGER_A, "GET", f"/missions/organizations/{org_b}/missions"))
    # only an admin appoints referents, changes policies and sees the national dashboard
    for actor in (REFERENT_56, MANAGER_A, VOLUNTEER):
        await role_not_allowed(platform.call(actor, "PUT", "/moderation/referents/x", json={"departments": ["56"]}))
        await role_not_allowed(platform.call(actor, "DELETE", "/moderation/referents/ref-29"))
        await role_not_allowed(
            platform.call(actor, "PUT", "/moderation/departments/56/policy", json={"policy": "post"})
        )
        await role_not_allowed(platform.call(actor, "GET", "/moderation/dashboard"))
    # managers and volunteers do not moderate; nobody unauthenticated does anything
    for actor in (MANAGER_A, VOLUNTEER):
        await role_not_allowed(
            platform.call(actor, "POST", f"/moderation/missions/{mission_b}/decision", json={"decision": "validate"})
        )
    await expect(401, "unauthenticated")(platform.call(None, "GET", "/moderation/departments/56/queue"))
    await role_not_allowed(
        platform.call(
            VOLUNTEER,
            "POST",
            "/missions/organizations",
            json={"name": "Club X", "kind": "association", "rna": "W561000123", "postal_code": "56000"},
        )
    )
    # the rightful actors still can
    await platform.ok(REFERENT_29, "POST", f"/moderation/missions/{mission_b}/decision", json={"decision": "validate"})
    assert org_a != org_b


async def test_two_referents_deciding_at_once_one_wins_the_other_gets_a_conflict(platform):
    await platform.ok(ADMIN, "PUT", "/moderation/referents/ref-56-bis", json={"departments": ["56"]})
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    mission_id = await platform.submitted_mission(MANAGER_A, organization_id, REFERENT_56, "56", MISSION)
    other = Actor(id="ref-56-bis", role="referent")
    answers = await asyncio.gather(
        platform.call(
            REFERENT_56, "POST", f"/moderation/missions/{mission_id}/decision", json={"decision": "validate"}
        ),
        platform.call(
            other,
            "POST",
            f"/moderation/missions/{mission_id}/decision",
            json={"decision": "refuse", "reason": "unsafe_conditions"},
        ),
    )
    assert sorted(a.status_code for a in answers) == [204, 409]
    assert next(a for a in answers if a.status_code == 409).json()["code"] == "already_decided"


async def test_a_redelivered_decision_changes_nothing_more(platform):
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    mission_id = await platform.submitted_mission(MANAGER_A, organization_id, REFERENT_56, "56", MISSION)
    await platform.ok(REFERENT_56, "POST", f"/moderation/missions/{mission_id}/decision", json={"decision": "validate"})
    await platform.mission_status(VOLUNTEER, mission_id, "published")
    missions_store = platform.app.state.runtime.context("missions").store
    before = await missions_store.read(mission_id)

    decision: Envelope = (await platform.app.state.runtime.context("moderation").store.read(mission_id))[0]
    assert decision.type == MissionValidated.event_type()
    # the relay publishing the same decision again (a crash before marking it), and a second handling
    await platform.app.state.runtime.bus.publish([OutgoingMessage.of(decision)])
    await (
        platform.app.state.runtime.context("missions")
        .component(MissionsHandlers)
        .apply_decision(mission_id, "validated", None, None, decision)
    )
    assert await missions_store.read(mission_id) == before


async def published_mission(platform: Platform, **change) -> str:
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    mission_id = await platform.submitted_mission(MANAGER_A, organization_id, REFERENT_56, "56", {**MISSION, **change})
    await platform.ok(REFERENT_56, "POST", f"/moderation/missions/{mission_id}/decision", json={"decision": "validate"})
    await platform.mission_status(VOLUNTEER, mission_id, "published")
    return mission_id


async def test_a_mission_fills_and_reopens_with_volunteers_acceptances(platform):
    mission_id = await published_mission(platform, places=2)
    bus = platform.app.state.runtime.bus

    async def volunteers_say(*events) -> None:
        envelopes = [e.envelope(v) for e, v in events]
        await bus.publish([OutgoingMessage.of(e) for e in envelopes])

    common = {"mission_id": mission_id, "organization_id": "o", "volunteer_id": "v"}
    await volunteers_say(
        (ApplicationAccepted(application_id="a1", **common), 2), (ApplicationAccepted(application_id="a2", **common), 2)
    )
    filled = await platform.mission_status(VOLUNTEER, mission_id, "filled")
    assert filled["free_places"] == 0
    await volunteers_say((ApplicationWithdrawn(application_id="a2", reason="not_available", **common), 3))
    reopened = await platform.mission_status(VOLUNTEER, mission_id, "published")
    assert reopened["free_places"] == 1


async def test_missions_close_by_themselves_a_month_after_their_end(platform):
    end = TODAY + timedelta(days=1)
    mission_id = await published_mission(platform, end_date=end.isoformat())
    handlers = platform.app.state.runtime.context("missions").component(MissionsHandlers)
    assert await handlers.close_ended_missions(end + timedelta(days=29)) == 0
    assert await handlers.close_ended_missions(end + timedelta(days=30)) == 1
    await platform.mission_status(MANAGER_A, mission_id, "closed")
    assert await handlers.close_ended_missions(end + timedelta(days=31)) == 0  # the job runs again: nothing more


async def places_shown(platform: Platform, mission_id: str) -> dict:
    """The free places of a mission as each read model shows them (None where it cannot yet answer)."""

    async def read(actor: Actor | None, path: str, **params):
        answer = await platform.call(actor, "GET", path, params=params)
        return answer.json() if answer.status_code == 200 else None

    mission = await read(VOLUNTEER, f"/missions/missions/{mission_id}") or {}
    listed = await read(MANAGER_A, f"/missions/organizations/{mission.get('organization_id')}/missions") or []
    dashboard = await read(REFERENT_56, "/moderation/departments/56/dashboard") or {}
    search = await read(None, "/matching/missions", postal_code="56000") or {}
    territory = await read(REFERENT_56, "/matching/territories/56") or {}  # once matching knows the referent
    return {
        "mission": (mission.get("status"), mission.get("free_places")),
        "organisation's list": [m["free_places"] for m in listed if m["id"] == mission_id],
        "dashboard": dashboard.get("places"),
        "search": [m["free_places"] for m in search.get("missions", []) if m["id"] == mission_id],
        "territory": [d["open_places"] for d in territory.get("domains", []) if d["domain"] == MISSION["domain"]],
    }


async def test_free_places_follow_each_acceptance_withdrawal_and_cancellation(platform_with_search):
    platform = platform_with_search
    mission_id = await published_mission(platform, places=3)
    bus = platform.app.state.runtime.bus
    roster = {"version": 0}

    async def volunteers_say(event) -> None:
        roster["version"] += 1
        await bus.publish([OutgoingMessage.of(event.envelope(roster["version"]))])

    async def places_are(free: int) -> None:
        expected = {
            "mission": ("published", free),
            "organisation's list": [free],
            "dashboard": {"offered": 3, "filled": 3 - free, "free": free},
            "search": [free],
            "territory": [free],
        }
        seen = {}

        async def everywhere() -> bool:
            seen["last"] = await places_shown(platform, mission_id)
            return seen["last"] == expected

        try:
            await eventually(everywhere, what=f"{free} free places everywhere")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; shown: {seen.get('last')}") from None

    def application(n: int) -> dict:
        return {"mission_id": mission_id, "organization_id": "o", "volunteer_id": f"v{n}", "application_id": f"a{n}"}

    await places_are(3)
    await volunteers_say(ApplicationAccepted(**application(1)))
    await places_are(2)
    await volunteers_say(ApplicationAccepted(**application(2)))
    await places_are(1)
    await volunteers_say(ApplicationWithdrawn(**application(1), reason="not_available"))
    await places_are(2)
    await volunteers_say(ApplicationCancelled(**application(2), reason="volunteer_erased"))
    await places_are(3)


async def test_a_mission_with_dates_already_past_is_refused(platform):
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    path = f"/missions/organizations/{organization_id}/missions"
    answer = await platform.call(
        MANAGER_A, "POST", path, json={**MISSION, "start_date": "2020-01-01", "end_date": "2020-01-15"}
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "mission_dates_past"
    assert set(problem["fields"]) == {"start_date", "end_date"}
    assert "déjà passée" in problem["fields"]["end_date"] and "déjà passées" in problem["detail"]
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    only_the_end = await platform.call(MANAGER_A, "POST", path, json={**MISSION, "end_date": yesterday})
    assert (only_the_end.status_code, set(only_the_end.json()["fields"])) == (422, {"end_date"})
    starting_today = await platform.call(
        MANAGER_A, "POST", path, json={**MISSION, "start_date": TODAY.isoformat(), "end_date": TODAY.isoformat()}
    )
    assert starting_today.status_code == 201, starting_today.text


async def test_a_mission_that_has_begun_keeps_its_start_when_edited(platform):
    organization_id = await platform.register_approved_organization(MANAGER_A, "56000", REFERENT_56)
    in_a_month = (TODAY + timedelta(days=30)).isoformat()
    drafted = await platform.ok(
        MANAGER_A,
        "POST",
        f"/missions/organizations/{organization_id}/missions",
        json={**MISSION, "start_date": TODAY.isoformat(), "end_date": in_a_month},
    )
    mission_id = drafted["mission_id"]
    # time passes: the mission began five days ago and is still being edited
    began = TODAY - timedelta(days=5)
    store = platform.app.state.runtime.context("missions").store
    content = MissionContent(**{**(await store.read(mission_id))[0].data["content"], "start_date": began})
    await append_events(
        store, mission_id, 1, [MissionEdited(mission_id=mission_id, organization_id=organization_id, content=content)]
    )
    edit = f"/missions/missions/{mission_id}"
    kept = await platform.call(
        MANAGER_A, "PUT", edit, json={**MISSION, "start_date": began.isoformat(), "end_date": in_a_month}
    )
    assert kept.status_code == 204, kept.text
    earlier = (began - timedelta(days=1)).isoformat()
    moved = await platform.call(MANAGER_A, "PUT", edit, json={**MISSION, "start_date": earlier, "end_date": in_a_month})
    assert (moved.status_code, moved.json()["code"], set(moved.json()["fields"])) == (
        422,
        "mission_dates_past",
        {"start_date"},
    )
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    ended = await platform.call(
        MANAGER_A, "PUT", edit, json={**MISSION, "start_date": began.isoformat(), "end_date": yesterday}
    )
    assert (ended.status_code, set(ended.json()["fields"])) == (422, {"end_date"})


async def test_referents_see_possible_duplicates_of_an_organisation_in_their_queue(platform):
    async def register(manager: Actor, name: str, postal_code: str, **numbers) -> str:
        body = {"name": name, "kind": "association", "postal_code": postal_code, **numbers}
        return (await platform.ok(manager, "POST", "/missions/organizations", json=body))["organization_id"]

    first = await register(MANAGER_A, "Restos du Cœur de Vannes", "56000", siret="73282932000074")
    await platform.until(
        REFERENT_56, "/moderation/departments/56/queue", lambda q: any(e["id"] == first for e in q), "the first"
    )
    await platform.ok(REFERENT_56, "POST", f"/moderation/organizations/{first}/decision", json={"decision": "approve"})
    # the same SIRET again, the same name typed otherwise, the same RNA in another department: all accepted
    same_siret = await register(MANAGER_B, "Aide alimentaire vannetaise", "56000", siret="73282932000074")
    same_name = await register(MANAGER_B, "restos du coeur de VANNES", "56000", rna="W561000999")
    same_rna = await register(MANAGER_B, "Antenne de Brest", "29200", rna="W561000999")
    elsewhere = await register(MANAGER_B, "Restos du Cœur de Vannes", "29200", rna="W291000123")

    def duplicates_in(queue: list[dict]) -> dict[str, list[tuple]]:
        return {
            e["id"]: [(d["id"], d["status"], d["department"], d["matched_on"]) for d in e["possible_duplicates"]]
            for e in queue
            if e["kind"] == "organization"
        }

    expected_56 = {
        same_siret: [(first, "approved", "56", ["siret"])],
        same_name: [(first, "approved", "56", ["name"]), (same_rna, "pending", "29", ["rna"])],
    }
    queue_56 = await platform.until(
        REFERENT_56, "/moderation/departments/56/queue", lambda q: duplicates_in(q) == expected_56, "duplicates in 56"
    )
    assert [e["title"] for e in queue_56] == ["Aide alimentaire vannetaise", "restos du coeur de VANNES"]
    expected_29 = {
        same_rna: [(same_name, "pending", "56", ["rna"])],
        elsewhere: [],  # a namesake in another department is another organisation
    }
    await platform.until(
        REFERENT_29, "/moderation/departments/29/queue", lambda q: duplicates_in(q) == expected_29, "duplicates in 29"
    )
