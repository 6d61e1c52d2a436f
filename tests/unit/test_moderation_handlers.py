"""The moderation handlers on the in-memory stores: referents act in their departments only, decide once,
and see possible duplicates of an organisation."""

import pytest

from services.moderation import projections
from services.moderation.handlers import Listing, ModerationHandlers
from shared.errors import Refusal
from shared.events import (
    Actor,
    MissionSubmitted,
    MissionValidated,
    OrganizationApproved,
    OrganizationRegistered,
    catalog,
)
from shared.events.vocabulary import MissionContent, Place, SafetyConditions
from tests.conftest import in_memory_context

ADMIN = Actor(id="admin-1", role="admin")
REFERENT_56 = Actor(id="ref-56", role="referent")
REFERENT_29 = Actor(id="ref-29", role="referent")
MANAGER = Actor(id="manager-a", role="manager")
CONTENT = MissionContent(
    title="Garde d’enfants de soignants",
    description="Accueillir les enfants des soignants du CHU.",
    domain="emergency_childcare",
    remote=False,
    department="56",
    places=3,
    place=Place(postal_code="56000", department="56"),
    safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
)


@pytest.fixture
async def handlers() -> ModerationHandlers:
    ctx = in_memory_context("moderation")
    await projections.setup(ctx.documents)
    handlers = ctx.provide(ModerationHandlers(ctx))
    await handlers.appoint(REFERENT_56.id, ["56"], ADMIN)
    await handlers.appoint(REFERENT_29.id, ["29", "2A"], ADMIN)
    return handlers


async def refused(call) -> str:
    with pytest.raises(Refusal) as refusal:
        await call
    return refusal.value.code


async def submit(handlers: ModerationHandlers, mission_id: str) -> None:
    """What the queue's consumer does with a submission of the missions service."""
    submitted = MissionSubmitted(mission_id=mission_id, organization_id="o1", content=CONTENT)
    await projections.on_mission_submitted(handlers.documents, submitted, submitted.envelope(2))


async def test_a_referent_decides_once_on_the_missions_of_their_department(handlers):
    await submit(handlers, "m1")
    assert [e.id for e in await handlers.queue("56", REFERENT_56)] == ["m1"]
    assert await refused(handlers.decide_mission("m1", "validate", None, None, REFERENT_29)) == "not_your_department"
    assert await refused(handlers.decide_mission("m1", "validate", None, None, MANAGER)) == "role_not_allowed"
    await handlers.decide_mission("m1", "validate", None, None, REFERENT_56)
    assert [e.type for e in await handlers.store.read("m1")] == [MissionValidated.event_type()]
    assert await refused(handlers.decide_mission("m1", "refuse", "unsafe_conditions", None, ADMIN)) == "already_decided"
    assert await refused(handlers.decide_mission("m2", "validate", None, None, ADMIN)) == "mission_not_awaiting_review"


async def test_queues_and_dashboards_are_scoped_to_the_referents_departments(handlers):
    assert await refused(handlers.queue("29", REFERENT_56)) == "not_your_department"
    assert await refused(handlers.department_dashboard("29", REFERENT_56)) == "not_your_department"
    assert await refused(handlers.queue("99", REFERENT_56)) == "unknown_department"
    assert await refused(handlers.queue("56", MANAGER)) == "role_not_allowed"
    assert await refused(handlers.national_dashboard(REFERENT_56)) == "role_not_allowed"
    assert await handlers.queue("2a", REFERENT_29) == []  # a department's code as people type it
    await handlers.revoke(REFERENT_29.id, ADMIN)
    assert await refused(handlers.queue("29", REFERENT_29)) == "not_your_department"
    assert await refused(handlers.referent(REFERENT_29.id, REFERENT_56)) == "forbidden"
    for envelope in await handlers.store.read(REFERENT_56.id):  # what the queue's consumer does
        await projections.on_referent_event(handlers.documents, catalog.decode(envelope), envelope)
    assert (await handlers.referent(REFERENT_56.id, REFERENT_56)).departments == ["56"]


async def test_a_duplicate_organisation_is_listed_beside_the_new_one(handlers):
    async def registered(organization_id: str, name: str, **numbers) -> OrganizationRegistered:
        event = OrganizationRegistered(
            organization_id=organization_id,
            name=name,
            kind="association",
            postal_code="56000",
            department="56",
            manager_ids=["m"],
            **numbers,
        )
        await projections.on_organization_registered(handlers.documents, event, event.envelope(1))
        return event

    await registered("o1", "Restos du Cœur de Vannes", siret="73282932000074")
    approval = OrganizationApproved(organization_id="o1", department="56")
    await projections.on_organization_decided(handlers.documents, approval, approval.envelope(2))
    await registered("o2", "restos du coeur de VANNES", rna="W561000999")
    [entry] = await handlers.queue("56", REFERENT_56)
    assert entry.id == "o2" and entry.kind == "organization"
    assert [(d.id, d.status, d.matched_on) for d in entry.possible_duplicates or []] == [("o1", "approved", ["name"])]
    await handlers.decide_organization("o2", "reject", "duplicate", "Déjà inscrite", REFERENT_56)
    assert await refused(handlers.decide_organization("o2", "approve", None, None, REFERENT_56)) == "already_decided"


async def test_the_referents_pages_list_their_departments_items_with_their_history(handlers):
    await submit(handlers, "m1")
    other = MissionSubmitted(
        mission_id="m29", organization_id="o2", content=CONTENT.model_copy(update={"department": "29"})
    )
    await projections.on_mission_submitted(handlers.documents, other, other.envelope(2))
    assert [e["id"] for e in await handlers.listing(REFERENT_56, Listing("mission"))] == ["m1"]
    assert {e["id"] for e in await handlers.listing(ADMIN, Listing("mission"))} == {"m1", "m29"}
    assert await refused(handlers.listing(REFERENT_56, Listing("mission", department="29"))) == "not_your_department"
    assert await refused(handlers.item("mission", "m29", REFERENT_56)) == "not_your_department"
    assert await refused(handlers.item("organization", "m1", REFERENT_56)) == "not_in_queue"
    assert await refused(handlers.scope(MANAGER)) == "role_not_allowed"
    assert [e["id"] for e in await handlers.listing(REFERENT_56, Listing("mission", text="ENFANTS soignants"))] == [
        "m1"
    ]
    assert await handlers.listing(REFERENT_56, Listing("mission", text="colis")) == []
    assert await handlers.listing(REFERENT_56, Listing("mission", waiting_days=2)) == []  # submitted just now
    assert [e["id"] for e in await handlers.listing(ADMIN, Listing("mission", newest_first=True))] == ["m29", "m1"]

    await handlers.decide_mission("m1", "refuse", "unsafe_conditions", "Pas d’encadrement.", REFERENT_56)
    for envelope in await handlers.store.read("m1"):  # what the queue's consumer does
        await projections.on_mission_decided(handlers.documents, catalog.decode(envelope), envelope)
    assert await handlers.listing(REFERENT_56, Listing("mission")) == []
    decided = await handlers.listing(REFERENT_56, Listing("mission", state="refused"))
    assert [(s["what"], s["reason"], s["comment"], s["by"]) for s in decided[0]["history"]] == [
        ("submitted", None, None, "system"),
        ("refused", "unsafe_conditions", "Pas d’encadrement.", REFERENT_56.id),
    ]
    counts = await handlers.counts(REFERENT_56)
    assert counts["mission"] == {"pending": 0, "validated": 0, "refused": 1, "changes_requested": 0}
