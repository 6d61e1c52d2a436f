"""The volunteers handlers on the in-memory stores: capacity, the waitlist, who may act, what managers see."""

import asyncio
from datetime import date

import pytest

from services.volunteers import projections
from services.volunteers.handlers import VolunteersHandlers
from shared.contracts.volunteers import (
    ApplicantContact,
    ApplicantFirstName,
    ApplicationInput,
    ApplicationWithdrawal,
    VolunteerProfile,
)
from shared.errors import Conflict, Forbidden
from shared.events import Actor, MissionPublished, OrganizationRegistered, catalog
from shared.events.vocabulary import MissionContent, Place, SafetyConditions
from shared.events.volunteers import roster_stream
from tests.conftest import in_memory_context

MANAGER, OTHER_MANAGER = Actor(id="manager-1", role="manager"), Actor(id="manager-2", role="manager")
REFERENT, ADMIN = Actor(id="ref-56", role="referent"), Actor(id="admin", role="admin")


class World:
    def __init__(self) -> None:
        self.ctx = in_memory_context("volunteers")
        self.handlers = VolunteersHandlers(self.ctx)
        self.documents = self.ctx.documents

    async def project(self) -> None:
        """What the service's consumers do with what it appended: its read models, up to date."""
        batches = await self.ctx.store.unpublished()
        for batch in batches:
            for envelope in batch.events:
                event = catalog.decode(envelope)
                if type(event) in projections.VOLUNTEER_EVENTS:
                    await projections.on_volunteer_event(self.documents, event, envelope)
                elif type(event) in projections.ROSTER_EVENTS:
                    await projections.on_roster_event(self.documents, event, envelope)
        await self.ctx.store.mark_published(batches)

    async def open_mission(self, mission_id: str, places: int) -> None:
        """What the missions service would publish: the organisation and the mission."""
        organization = OrganizationRegistered(
            organization_id="org-1",
            name="Secours",
            kind="association",
            rna="W561000123",
            postal_code="56000",
            department="56",
            manager_ids=[MANAGER.id],
        )
        await projections.on_organization_registered(self.documents, organization, organization.envelope(1))
        content = MissionContent(
            title="Maraude",
            description="Distribuer des repas chauds.",
            domain="food_and_emergency_aid",
            remote=False,
            department="56",
            places=places,
            place=Place(postal_code="56000", department="56"),
            safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
        )
        published = MissionPublished(
            mission_id=mission_id, organization_id="org-1", content=content, free_places=places
        )
        await projections.on_mission_event(self.documents, published, published.envelope(1))

    async def sign_up(self, n: int) -> Actor:
        profile = VolunteerProfile(
            first_name=f"Prénom{n}",
            last_name=f"Nom{n}",
            email=f"benevole{n}@exemple.fr",
            phone=f"06 12 34 56 {n:02d}",
            birth_date=date(date.today().year - 30, 1, 1),
            postal_code="56000",
            domains=["food_and_emergency_aid"],
            availability=["weekends"],
        )
        signed_up, _ = await self.handlers.sign_up(profile)
        return Actor(id=signed_up.volunteer_id, role="volunteer")

    async def apply(self, volunteer: Actor, mission_id: str) -> str:
        created = await self.handlers.apply(mission_id, ApplicationInput(message="Disponible"), volunteer)
        return created.application_id

    async def accepted(self, mission_id: str) -> int:
        roster = await self.ctx.store.read(roster_stream(mission_id))
        return sum(e.type == "ApplicationAccepted" for e in roster)


@pytest.fixture
def world() -> World:
    return World()


async def test_a_mission_of_one_place_accepts_one_application_and_refuses_the_next_as_full(world):
    await world.open_mission("one", 1)
    first, second = await world.sign_up(1), await world.sign_up(2)
    applications = [await world.apply(first, "one"), await world.apply(second, "one")]
    await world.handlers.accept("one", applications[0], MANAGER)
    with pytest.raises(Conflict) as full:
        await world.handlers.accept("one", applications[1], MANAGER)
    assert full.value.code == "mission_full"
    assert await world.accepted("one") == 1


async def test_acceptances_at_once_never_exceed_the_places(world):
    await world.open_mission("two", 2)
    volunteers = [await world.sign_up(n) for n in range(10, 16)]
    applications = [await world.apply(v, "two") for v in volunteers]
    outcomes = await asyncio.gather(
        *(world.handlers.accept("two", a, MANAGER) for a in applications), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 4 and {r.code for r in refused if isinstance(r, Conflict)} == {"mission_full"}
    assert await world.accepted("two") == 2


async def test_a_withdrawal_promotes_the_waitlisted_volunteer(world):
    await world.open_mission("one", 1)
    holder, waiting = await world.sign_up(20), await world.sign_up(21)
    application = await world.apply(holder, "one")
    await world.handlers.accept("one", application, MANAGER)
    await world.handlers.join_waitlist("one", waiting)
    await world.handlers.withdraw("one", application, ApplicationWithdrawal(reason="not_available"), holder)
    roster = [catalog.decode(e) for e in await world.ctx.store.read(roster_stream("one"))]
    promoted = [e for e in roster if getattr(e, "promoted_from_waitlist", False)]
    assert [e.volunteer_id for e in promoted] == [waiting.id]


@pytest.mark.parametrize("actor", [OTHER_MANAGER, REFERENT])
async def test_only_the_managers_of_the_organisation_decide(world, actor):
    await world.open_mission("m", 2)
    application = await world.apply(await world.sign_up(30), "m")
    for decide in (world.handlers.accept("m", application, actor), world.handlers.mission_applications("m", actor)):
        with pytest.raises(Forbidden) as refused:
            await decide
        assert refused.value.code == "not_your_organization"
    await world.handlers.accept("m", application, ADMIN)


async def test_volunteers_act_on_their_own_profile_and_only_volunteers_apply(world):
    await world.open_mission("m", 2)
    volunteer, other = await world.sign_up(40), await world.sign_up(41)
    for read in (world.handlers.profile, world.handlers.export, world.handlers.applications_of):
        with pytest.raises(Forbidden) as refused:
            await read(volunteer.id, other)
        assert refused.value.code == "not_your_profile"
    assert (await world.handlers.profile(volunteer.id, ADMIN)).first_name == "Prénom40"
    with pytest.raises(Forbidden) as manager_applies:
        await world.handlers.apply("m", ApplicationInput(), MANAGER)
    assert manager_applies.value.code == "role_not_allowed"


async def test_managers_see_a_first_name_then_the_contact_once_accepted(world):
    await world.open_mission("m", 2)
    volunteer = await world.sign_up(50)
    application = await world.apply(volunteer, "m")
    await world.project()
    [pending] = await world.handlers.mission_applications("m", MANAGER)
    assert pending.volunteer == ApplicantFirstName(first_name="Prénom50") and pending.message == "Disponible"
    await world.handlers.accept("m", application, MANAGER)
    await world.project()
    [accepted] = await world.handlers.mission_applications("m", MANAGER)
    assert accepted.volunteer == ApplicantContact(
        first_name="Prénom50", last_name="Nom50", email="benevole50@exemple.fr", phone="+33612345650"
    )
