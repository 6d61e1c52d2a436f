"""The volunteers service on both backends: sign-up, eligibility, capacity under concurrency, the
waitlist, missions ending, scoping, GDPR export and erasure (searched for in every store)."""

import asyncio
import json
from datetime import date

import httpx
import pytest

from services.volunteers import service as volunteers_service
from shared.events import (
    Actor,
    Envelope,
    Event,
    MissionCancelled,
    MissionClosed,
    MissionPublished,
    OrganizationRegistered,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions
from shared.events.volunteers import roster_stream
from shared.runtime.app import create_app
from shared.runtime.ports import Message, OutgoingMessage
from tests.conftest import eventually, service_headers

MANAGER, OTHER_MANAGER = Actor(id="manager-1", role="manager"), Actor(id="manager-2", role="manager")
REFERENT, ADMIN = Actor(id="ref-56", role="referent"), Actor(id="admin", role="admin")
TODAY = date.today()


def born(years_ago: int) -> str:
    return date(TODAY.year - years_ago, 1, 1).isoformat()


def person(n: int, **change) -> dict:
    return {
        "first_name": f"Prénom{n}",
        "last_name": f"Nom{n}",
        "email": f"benevole{n}@exemple.fr",
        "phone": f"06 12 34 {n // 100 % 100:02d} {n % 100:02d}",
        "birth_date": born(30),
        "postal_code": "56000",
        "domains": ["food_and_emergency_aid"],
        "availability": ["weekends"],
        "mode": "both",
        "max_distance_km": 20,
    } | change


class Volunteers:
    def __init__(self, client: httpx.AsyncClient, app) -> None:
        self.client, self.app = client, app
        self.versions: dict[str, int] = {}

    @property
    def context(self):
        return self.app.state.runtime.context("volunteers")

    async def call(
        self, actor: Actor | None, method: str, path: str, *, headers: dict | None = None, **kwargs
    ) -> httpx.Response:
        headers = service_headers(self.app, actor) | (headers or {})
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def sign_up(self, n: int, **change) -> Actor:
        answer = await self.call(None, "POST", "/volunteers", json=person(n, **change))
        assert answer.status_code in (200, 201), answer.text
        return Actor(id=answer.json()["volunteer_id"], role="volunteer")

    async def missions_service_says(self, *events: Event) -> None:
        """What the missions service would publish: organisations and missions, on the bus."""
        envelopes = []
        for event in events:
            stream = event.stream_id()
            self.versions[stream] = self.versions.get(stream, 0) + 1
            envelopes.append(event.envelope(self.versions[stream]))
        await self.app.state.runtime.bus.publish([OutgoingMessage.of(e) for e in envelopes])

    async def open_mission(self, mission_id: str, places: int, *, remote: bool = False, minors: bool = False) -> None:
        content = MissionContent(
            title="Maraude",
            description="Distribuer des repas chauds.",
            domain="food_and_emergency_aid",
            remote=remote,
            department="56",
            places=places,
            open_to_minors=minors,
            place=None if remote else Place(postal_code="56000", department="56"),
            safety=None if remote else SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
        )
        await self.missions_service_says(
            OrganizationRegistered(
                organization_id="org-1",
                name="Secours",
                kind="association",
                rna="W561000123",
                postal_code="56000",
                department="56",
                manager_ids=[MANAGER.id],
            ),
            MissionPublished(mission_id=mission_id, organization_id="org-1", content=content, free_places=places),
        )

        async def known() -> bool:
            found = await self.context.documents.get("missions", mission_id)
            organization = await self.context.documents.get("organizations", "org-1")
            return bool(found and found.get("status") == "published" and organization)

        await eventually(known, what="the mission in the volunteers service")

    async def apply(
        self, volunteer: Actor, mission_id: str, message: str | None = None, *, headers: dict | None = None
    ) -> httpx.Response:
        return await self.call(
            volunteer,
            "POST",
            f"/volunteers/missions/{mission_id}/applications",
            headers=headers,
            json={"message": message} if message else {},
        )

    async def roster(self, mission_id: str) -> list[Envelope]:
        return await self.context.store.read(roster_stream(mission_id))


@pytest.fixture
async def volunteers(settings):
    app = create_app(settings, [volunteers_service])
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client,
    ):
        yield Volunteers(client, app)


async def test_signing_up_twice_gives_the_same_volunteer_even_at_once(volunteers):
    first = await volunteers.call(None, "POST", "/volunteers", json=person(1))
    assert first.status_code == 201 and first.json()["department"] == "56"
    again = await volunteers.call(None, "POST", "/volunteers", json=person(1, email="  BENEVOLE1@Exemple.FR "))
    assert (again.status_code, again.json()["volunteer_id"]) == (200, first.json()["volunteer_id"])

    at_once = await asyncio.gather(*(volunteers.call(None, "POST", "/volunteers", json=person(2)) for _ in range(6)))
    assert {a.status_code for a in at_once} <= {200, 201}
    assert len({a.json()["volunteer_id"] for a in at_once}) == 1
    assert sum(a.status_code == 201 for a in at_once) == 1
    stream = await volunteers.context.store.read(at_once[0].json()["volunteer_id"])
    assert [e.type for e in stream] == ["VolunteerRegistered"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"birth_date": born(15)}, "birth_date", "au moins 16 ans"),
        ({"birth_date": born(101)}, "birth_date", "Vérifiez votre date de naissance"),
        ({"phone": "01 23 45 67 89"}, "phone", "mobile français"),
        ({"email": "pas-une-adresse"}, "email", "Adresse e-mail invalide"),
        ({"postal_code": "75700"}, "postal_code", "aucune commune"),
        ({"domains": ["sport"]}, "domains.0", "choix possibles"),
    ],
)
async def test_a_bad_sign_up_is_refused_in_french_and_changes_nothing(volunteers, change, field, message):
    answer = await volunteers.call(None, "POST", "/volunteers", json=person(3, **change))
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert message in answer.json()["fields"][field]
    assert await volunteers.context.documents.count("email_index") == 0


async def test_eligibility_in_crisis_mode(volunteers):
    await volunteers.open_mission("on-site", 5)
    await volunteers.open_mission("remote", 5, remote=True)
    await volunteers.open_mission("minors-ok", 5, minors=True)
    senior = await volunteers.sign_up(10, birth_date=born(72))
    fragile = await volunteers.sign_up(11, health_risk=True)
    minor = await volunteers.sign_up(12, birth_date=born(16))
    for person_ in (senior, fragile):
        refused = await volunteers.apply(person_, "on-site")
        assert (refused.status_code, refused.json()["code"]) == (403, "onsite_not_allowed_in_crisis")
        assert (await volunteers.apply(person_, "remote")).status_code == 201
    refused = await volunteers.apply(minor, "on-site")
    assert (refused.status_code, refused.json()["code"]) == (403, "minors_not_accepted")
    assert (await volunteers.apply(minor, "minors-ok")).status_code == 201
    again = await volunteers.apply(minor, "minors-ok")
    assert (again.status_code, again.json()["code"]) == (409, "already_applied")


async def test_a_volunteer_holds_at_most_five_pending_applications(volunteers):
    volunteer = await volunteers.sign_up(20)
    for n in range(6):
        await volunteers.open_mission(f"m{n}", 3)
    for n in range(5):
        assert (await volunteers.apply(volunteer, f"m{n}")).status_code == 201

    async def five_pending() -> bool:
        return await volunteers.context.documents.count("applications", {"volunteer_id": volunteer.id}) == 5

    await eventually(five_pending, what="five applications projected")
    sixth = await volunteers.apply(volunteer, "m5")
    assert (sixth.status_code, sixth.json()["code"]) == (409, "too_many_applications")


async def test_an_intake_request_carried_out_twice_at_once_applies_once(volunteers):
    """A partition that changes hands mid-batch has its records handled by two members for a moment."""
    volunteer = await volunteers.sign_up(21)
    await volunteers.open_mission("m1", 3)
    request = {"x-intake-request": "6f1c4b1e-2d3a-4c5b-8e9f-0a1b2c3d4e5f"}
    answers = await asyncio.gather(
        *(volunteers.apply(volunteer, "m1", headers=request) for _ in range(4)),
        volunteers.apply(volunteer, "m1", headers=request),
    )
    assert {(a.status_code, a.json()["application_id"]) for a in answers} == {(201, request["x-intake-request"])}
    roster = await volunteers.context.store.read(roster_stream("m1"))
    assert [e.type for e in roster] == ["ApplicationReceived"]
    other = await volunteers.apply(volunteer, "m1")  # another request of the same volunteer is refused
    assert (other.status_code, other.json()["code"]) == (409, "already_applied")


async def test_fifty_concurrent_acceptances_on_ten_places_accept_exactly_ten(volunteers):
    await volunteers.open_mission("big", 10)
    applicants = [await volunteers.sign_up(100 + n) for n in range(50)]
    applications = [(await volunteers.apply(v, "big")).json()["application_id"] for v in applicants]

    answers = await asyncio.gather(
        *(volunteers.call(MANAGER, "POST", f"/volunteers/missions/big/applications/{a}/accept") for a in applications)
    )
    accepted = [a for a in answers if a.status_code == 204]
    full = [a for a in answers if a.status_code == 409]
    assert (len(accepted), len(full)) == (10, 40)
    assert {a.json()["code"] for a in full} == {"mission_full"}
    assert all("complète" in a.json()["detail"] for a in full)
    assert sum(e.type == "ApplicationAccepted" for e in await volunteers.roster("big")) == 10
    # the 40 others may still queue for a place
    late = applicants[-1]
    waitlisted = await volunteers.call(late, "POST", "/volunteers/missions/big/waitlist")
    assert waitlisted.status_code == 409 and waitlisted.json()["code"] == "already_applied"
    newcomer = await volunteers.sign_up(999)
    assert (await volunteers.apply(newcomer, "big")).json()["code"] == "mission_full"
    assert (await volunteers.call(newcomer, "POST", "/volunteers/missions/big/waitlist")).status_code == 204


async def test_the_waitlist_promotes_the_first_eligible_volunteer_when_a_place_frees(volunteers):
    await volunteers.open_mission("one", 1)
    holder, senior, second, third = [await volunteers.sign_up(n) for n in (30, 31, 32, 33)]
    application = (await volunteers.apply(holder, "one")).json()["application_id"]
    assert (
        await volunteers.call(MANAGER, "POST", f"/volunteers/missions/one/applications/{application}/accept")
    ).status_code == 204
    senior = await volunteers.sign_up(31, birth_date=born(75))  # same e-mail: same volunteer, still 30 years old
    for volunteer in (second, third):
        assert (await volunteers.call(volunteer, "POST", "/volunteers/missions/one/waitlist")).status_code == 204
    assert (await volunteers.call(second, "DELETE", "/volunteers/missions/one/waitlist")).status_code == 204
    withdrawn = await volunteers.call(
        holder,
        "POST",
        f"/volunteers/missions/one/applications/{application}/withdraw",
        json={"reason": "not_available"},
    )
    assert withdrawn.status_code == 204

    roster = await volunteers.roster("one")
    promoted = [e for e in roster if e.type == "ApplicationReceived" and e.data["promoted_from_waitlist"]]
    assert [e.data["volunteer_id"] for e in promoted] == [third.id]

    async def projected() -> bool:
        mine = await volunteers.call(third, "GET", f"/volunteers/{third.id}/applications")
        return any(a["promoted_from_waitlist"] and a["status"] == "pending" for a in mine.json())

    await eventually(projected, what="the promotion in the volunteer's applications")
    assert senior.id != third.id


async def test_when_a_mission_ends_its_pending_applications_end_too_once(volunteers):
    await volunteers.open_mission("closing", 3)
    await volunteers.open_mission("cancelled", 3)
    volunteer = await volunteers.sign_up(40)
    await volunteers.apply(volunteer, "closing")
    await volunteers.apply(volunteer, "cancelled")
    await volunteers.missions_service_says(
        MissionClosed(mission_id="closing", organization_id="org-1", reason="ended"),
        MissionCancelled(mission_id="cancelled", organization_id="org-1", reason="Plus de besoin"),
    )

    async def ended() -> bool:
        mine = (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}/applications")).json()
        return sorted((a["status"], a.get("reason")) for a in mine) == [
            ("cancelled", "mission_cancelled"),
            ("refused", "mission_closed"),
        ]

    await eventually(ended, what="applications ended with their missions")
    before = len(await volunteers.roster("closing"))
    closed = await volunteers.context.store.read("closing")  # nothing: missions' stream is not ours
    assert closed == []
    # redelivery of the same MissionClosed envelope (as after a relay crash) changes nothing more
    volunteers.versions["closing"] -= 1
    await volunteers.missions_service_says(MissionClosed(mission_id="closing", organization_id="org-1", reason="ended"))
    await volunteers.open_mission("marker", 1)  # once this is through, the redelivered event was handled
    assert len(await volunteers.roster("closing")) == before


async def test_only_the_missions_managers_decide_and_volunteers_see_only_themselves(volunteers):
    await volunteers.open_mission("scoped", 2)
    volunteer, other = await volunteers.sign_up(50), await volunteers.sign_up(51)
    application = (await volunteers.apply(volunteer, "scoped", "Je suis disponible le samedi")).json()["application_id"]
    for actor in (REFERENT, OTHER_MANAGER, other):
        answer = await volunteers.call(actor, "POST", f"/volunteers/missions/scoped/applications/{application}/accept")
        assert answer.status_code == 403, actor
        listing = await volunteers.call(actor, "GET", "/volunteers/missions/scoped/applications")
        assert listing.status_code == 403, actor
    for actor in (other, MANAGER, REFERENT):
        assert (await volunteers.call(actor, "GET", f"/volunteers/{volunteer.id}")).status_code == 403
        assert (await volunteers.call(actor, "GET", f"/volunteers/{volunteer.id}/export")).status_code == 403
    assert (await volunteers.call(None, "GET", f"/volunteers/{volunteer.id}")).status_code == 401
    withdraw = await volunteers.call(
        other, "POST", f"/volunteers/missions/scoped/applications/{application}/withdraw", json={"reason": "other"}
    )
    assert withdraw.status_code == 404

    async def listed() -> bool:
        return len((await volunteers.call(MANAGER, "GET", "/volunteers/missions/scoped/applications")).json()) == 1

    await eventually(listed, what="the application listed for the manager")
    pending = (await volunteers.call(MANAGER, "GET", "/volunteers/missions/scoped/applications")).json()[0]
    assert pending["volunteer"] == {"first_name": "Prénom50"}  # contact details only once accepted
    assert pending["message"] == "Je suis disponible le samedi"
    own = (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}/applications")).json()
    assert [a["message"] for a in own] == ["Je suis disponible le samedi"]  # in clear for its author too
    assert (
        await volunteers.call(MANAGER, "POST", f"/volunteers/missions/scoped/applications/{application}/accept")
    ).status_code == 204

    async def contact_shown() -> bool:
        listing = (await volunteers.call(MANAGER, "GET", "/volunteers/missions/scoped/applications")).json()
        return listing[0]["volunteer"].get("email") == "benevole50@exemple.fr"

    await eventually(contact_shown, what="contact details of the accepted volunteer")


async def everything_stored(volunteers: Volunteers, settings) -> str:
    """Every byte the volunteers service and the bus hold, as text to search."""
    if settings.backend == "embedded":
        await volunteers.context.documents.ping()
        return "".join(p.read_bytes().decode("latin-1") for p in settings.data_dir.glob("*.sqlite3*"))
    from pymongo import AsyncMongoClient

    from shared.runtime.backend import database_name

    client = AsyncMongoClient(settings.mongodb_url)
    try:
        db = client[database_name(settings, "volunteers")]
        dumped = [
            json.dumps(doc, default=str) for name in await db.list_collection_names() async for doc in db[name].find()
        ]
    finally:
        await client.close()
    seen: list[Message] = []

    async def record(message: Message) -> None:
        seen.append(message)

    reader = volunteers.app.state.runtime.bus.subscribe(
        "gdpr-audit", ["volunteers.volunteer", "volunteers.application"], record
    )
    await reader.start()
    total = len(await volunteers.context.store.read(volunteers.erased_id)) + len(await volunteers.roster("gdpr"))

    async def all_read() -> bool:
        return len(seen) >= total

    await eventually(all_read, what="every published event")
    await reader.stop()
    return "".join(dumped) + "".join(m.value.decode() for m in seen)


async def test_export_then_erasure_leaves_no_personal_field_readable_anywhere(volunteers, settings, capsys):
    await volunteers.open_mission("gdpr", 2)
    volunteer = await volunteers.sign_up(
        60,
        first_name="Marguerite",
        last_name="Yourcenar",
        email="marguerite.yourcenar@exemple.fr",
        phone="07 98 76 54 32",
    )
    application = (await volunteers.apply(volunteer, "gdpr", "Écrivez-moi à marguerite.yourcenar@exemple.fr")).json()

    async def exported() -> dict:
        return (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}/export")).json()

    async def export_complete() -> bool:
        return len((await exported())["applications"]) == 1

    await eventually(export_complete, what="the application in the export")
    data = await exported()
    assert data["profile"]["email"] == "marguerite.yourcenar@exemple.fr"
    assert data["profile"]["phone"] == "+33798765432" and data["profile"]["last_name"] == "Yourcenar"
    assert data["applications"][0]["message"].startswith("Écrivez-moi")

    assert (await volunteers.call(volunteer, "DELETE", f"/volunteers/{volunteer.id}")).status_code == 204
    volunteers.erased_id = volunteer.id
    roster = await volunteers.roster("gdpr")
    assert [e.type for e in roster][-1] == "ApplicationCancelled"
    assert (
        roster[-1].data["reason"] == "volunteer_erased"
        and roster[-1].data["application_id"] == application["application_id"]
    )
    assert (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}")).status_code == 404
    assert (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}/export")).status_code == 404

    async def anonymous_facts_kept() -> bool:
        doc = await volunteers.context.documents.get("volunteers", volunteer.id)
        return bool(doc and doc.get("erased"))

    await eventually(anonymous_facts_kept, what="the erased volunteer's anonymous facts")
    facts = await volunteers.context.documents.get("volunteers", volunteer.id)
    assert facts["department"] == "56" and facts["age_bracket"] == "25-34"

    async def shown_erased_to_managers() -> bool:
        listing = (await volunteers.call(MANAGER, "GET", "/volunteers/missions/gdpr/applications")).json()
        return [(a["status"], a["volunteer"], a["message"]) for a in listing] == [("cancelled", {"erased": True}, None)]

    await eventually(shown_erased_to_managers, what="the managers' list showing an erased applicant")

    stored = await everything_stored(volunteers, settings)
    for personal in ("marguerite", "Marguerite", "Yourcenar", "yourcenar", "798765432", "98 76 54 32", "Écrivez"):
        assert personal not in stored, personal
    logs = capsys.readouterr().out
    for personal in ("marguerite", "Yourcenar", "98 76 54 32", "798765432"):
        assert personal not in logs, personal
    # the same e-mail may sign up again, as a new volunteer
    again = await volunteers.call(None, "POST", "/volunteers", json=person(61, email="marguerite.yourcenar@exemple.fr"))
    assert again.status_code == 201 and again.json()["volunteer_id"] != volunteer.id


async def test_a_volunteer_updates_their_profile(volunteers):
    volunteer = await volunteers.sign_up(70)
    changed = await volunteers.call(
        volunteer,
        "PATCH",
        f"/volunteers/{volunteer.id}",
        json={"phone": "07 11 22 33 44", "postal_code": "29200", "mode": "remote"},
    )
    assert changed.status_code == 204

    async def updated() -> bool:
        profile = (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}")).json()
        return profile.get("department") == "29" and profile.get("mode") == "remote"

    await eventually(updated, what="the updated profile")
    profile = (await volunteers.call(volunteer, "GET", f"/volunteers/{volunteer.id}")).json()
    assert profile["phone"] == "+33711223344" and profile["first_name"] == "Prénom70"
    refused = await volunteers.call(volunteer, "PATCH", f"/volunteers/{volunteer.id}", json={"phone": "12"})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_volunteer")
    other = await volunteers.sign_up(71)
    assert (
        await volunteers.call(other, "PATCH", f"/volunteers/{volunteer.id}", json={"mode": "both"})
    ).status_code == 403
    stream = await volunteers.context.store.read(volunteer.id)
    assert [e.type for e in stream] == ["VolunteerRegistered", "VolunteerProfileUpdated"]


async def test_a_sign_up_whose_earlier_try_died_between_its_two_writes_waits_instead_of_being_lost(servers, tmp_path):
    """MongoDB protocol only (the embedded store writes both in one transaction): an earlier try claimed the
    e-mail and the stream's first version, then died before writing the registration. A retry must not take
    that for a success (a volunteer without a registration): 503 until the claim is cleared, then registered."""
    from datetime import UTC, datetime, timedelta

    from services.volunteers.handlers import VolunteersHandlers
    from services.volunteers.projections import EMAILS
    from tests.conftest import make_settings

    app = create_app(make_settings("kafka+mongo", tmp_path, servers), [volunteers_service])
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client,
    ):
        volunteers = Volunteers(client, app)
        handlers = volunteers.context.component(VolunteersHandlers)
        dead_id = "01a2dead-0000-7000-8000-000000000001"
        await volunteers.context.documents.insert(
            EMAILS, handlers.email_key("benevole90@exemple.fr"), {"volunteer_id": dead_id}
        )
        outbox = volunteers.context.store.inner._outbox  # the dead try's claim, as it left it
        claim = {"stream_id": dead_id, "first": 1, "size": 1, "recorded_at": datetime.now(UTC)}
        await outbox.insert_one({"_id": f"{dead_id}:1", **claim})

        busy = await volunteers.call(None, "POST", "/volunteers", json=person(90))
        assert (busy.status_code, busy.json()["code"]) == (503, "service_unavailable")
        assert await volunteers.context.store.read(dead_id) == []

        await outbox.update_one(
            {"_id": f"{dead_id}:1"}, {"$set": {"recorded_at": datetime.now(UTC) - timedelta(minutes=5)}}
        )

        async def cleared() -> bool:  # the relay drops a claim older than ORPHAN_AFTER
            return (
                await outbox.find_one({"_id": f"{dead_id}:1", "size": 1, "recorded_at": {"$lt": datetime.now(UTC)}})
                is None
            )

        await eventually(cleared, what="the dead try's claim cleared by the relay")
        registered = await volunteers.call(None, "POST", "/volunteers", json=person(90))
        assert registered.status_code in (200, 201) and registered.json()["volunteer_id"] == dead_id
        assert [e.type for e in await volunteers.context.store.read(dead_id)] == ["VolunteerRegistered"]
