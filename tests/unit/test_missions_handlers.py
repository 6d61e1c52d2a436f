"""The missions handlers on the in-memory stores: who may do what, and a mission's way to publication."""

from datetime import UTC, datetime, timedelta

import pytest

from services.missions import projections
from services.missions.domain import local_date
from services.missions.handlers import MissionsHandlers
from shared.contracts.missions import MissionInput
from shared.contracts.organizations import OrganizationProfile
from shared.errors import Refusal
from shared.events import (
    Actor,
    Envelope,
    MissionValidated,
    OrganizationApproved,
    ReferentAppointed,
    catalog,
)
from tests.conftest import in_memory_context

MANAGER = Actor(id="manager-a", role="manager")
OTHER_MANAGER = Actor(id="manager-b", role="manager")
REFERENT_56 = Actor(id="ref-56", role="referent")
REFERENT_29 = Actor(id="ref-29", role="referent")
VOLUNTEER = Actor(id="vol-1", role="volunteer")
ORGANIZATION = OrganizationProfile(name="Banque alimentaire", kind="association", rna="W561000123", postal_code="56000")
MISSION = MissionInput(
    title="Distribution de colis",
    description="Préparer et distribuer des colis aux familles de Vannes.",
    domain="food_and_emergency_aid",
    remote=False,
    place={"postal_code": "56000"},
    places=2,
    end_date=local_date("56", datetime.now(UTC)) + timedelta(days=30),
    safety={"distancing": True, "protective_equipment": True, "supervision": False},
)


@pytest.fixture
async def handlers() -> MissionsHandlers:
    ctx = in_memory_context("missions")
    await projections.setup(ctx.documents)
    return ctx.provide(MissionsHandlers(ctx))


async def project(handlers: MissionsHandlers, mission_id: str) -> list[Envelope]:
    """What the read-model consumer does with the mission's events."""
    envelopes = await handlers.store.read(mission_id)
    for envelope in envelopes:
        await projections.on_mission_event(handlers.documents, catalog.decode(envelope), envelope)
    return envelopes


async def approved_organization(handlers: MissionsHandlers) -> str:
    registered = await handlers.register_organization(ORGANIZATION, MANAGER)
    approval = OrganizationApproved(organization_id=registered.organization_id, department="56")
    await projections.on_organization_decided(handlers.documents, approval, approval.envelope(1))
    return registered.organization_id


def code_of(refusal: pytest.ExceptionInfo[Refusal]) -> str:
    return refusal.value.code


async def test_a_drafted_mission_is_published_once_a_referent_validates_it(handlers):
    organization_id = await approved_organization(handlers)
    assert (await handlers.organization(organization_id)).status == "approved"
    mission_id = (await handlers.draft(organization_id, MISSION, MANAGER)).mission_id
    await handlers.submit(mission_id, MANAGER)
    submitted = await project(handlers, mission_id)
    assert (await handlers.mission(mission_id, MANAGER)).status == "submitted"
    with pytest.raises(Refusal) as hidden:
        await handlers.mission(mission_id, None)
    assert code_of(hidden) == "mission_not_found"  # not public yet

    decision = MissionValidated(mission_id=mission_id, organization_id=organization_id, department="56")
    await handlers.apply_decision(mission_id, "validated", None, None, decision.envelope(1))
    await project(handlers, mission_id)
    published = await handlers.mission(mission_id, None)
    assert (published.status, published.free_places, published.department) == ("published", 2, "56")
    assert published.content.place is not None and published.content.place.commune == "Vannes"
    assert len(await handlers.store.read(mission_id)) == len(submitted) + 2  # moderated, then published
    listed = await handlers.organization_missions(organization_id, "published", MANAGER)
    assert [m.id for m in listed] == [mission_id]


async def test_only_the_organisations_managers_act_on_its_missions(handlers):
    organization_id = await approved_organization(handlers)
    mission_id = (await handlers.draft(organization_id, MISSION, MANAGER)).mission_id
    await project(handlers, mission_id)
    refusals = {
        "draft": handlers.draft(organization_id, MISSION, OTHER_MANAGER),
        "submit": handlers.submit(mission_id, OTHER_MANAGER),
        "cancel": handlers.cancel(mission_id, "Plus de besoin", OTHER_MANAGER),
        "list": handlers.organization_missions(organization_id, None, OTHER_MANAGER),
    }
    for action, call in refusals.items():
        with pytest.raises(Refusal) as refused:
            await call
        assert code_of(refused) == "not_your_organization", action
    with pytest.raises(Refusal) as hidden:
        await handlers.mission(mission_id, OTHER_MANAGER)  # a draft of another organisation does not exist for them
    assert code_of(hidden) == "mission_not_found"
    with pytest.raises(Refusal) as volunteer:
        await handlers.register_organization(ORGANIZATION, VOLUNTEER)
    assert code_of(volunteer) == "role_not_allowed"


async def test_referents_read_the_organisations_of_their_departments_only(handlers):
    organization_id = await approved_organization(handlers)
    appointed = ReferentAppointed(referent_id=REFERENT_56.id, departments=["56"])
    await projections.on_referent_event(handlers.documents, appointed, appointed.envelope(1))
    assert (await handlers.readable_organization(organization_id, REFERENT_56)).department == "56"
    with pytest.raises(Refusal) as refused:
        await handlers.readable_organization(organization_id, REFERENT_29)
    assert code_of(refused) == "forbidden"
    with pytest.raises(Refusal) as unknown:
        await handlers.readable_organization("nope", REFERENT_56)
    assert code_of(unknown) == "organization_not_found"
