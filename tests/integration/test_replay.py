"""Replaying read models (ADR 0011), on both backends: a projection bug fixed then replayed gives the right
documents while the service keeps answering, events arriving meanwhile end up in the rebuilt models, a replay
that fails leaves the live models as they were and the group running, the command prints its progress, and
every service's read models replay from a platform's history."""

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from fastapi import APIRouter, Depends, HTTPException

from benchmarks.replay import publish_history
from services.__main__ import SERVICES
from shared.events import Envelope, OrganizationRegistered
from shared.runtime.app import Service, ServiceContext, create_app, service_context
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import CONTROL, Subscriber
from shared.runtime.ports import DocumentStore, DuplicateKeyError, OutgoingMessage, Projection
from shared.runtime.projections import fresh_document
from shared.runtime.replay import Progress, ReplayFailed, replay_services, shadow_of
from shared.runtime.settings import Settings
from tests.conftest import ROOT, env_of, eventually, make_settings

GROUP, ORGANIZATIONS = "demo.organizations", "organizations"
router = APIRouter()
Demo = Annotated[ServiceContext, Depends(service_context("demo"))]


@router.get("/demo/organizations/{organization_id}")
async def organization(organization_id: str, ctx: Demo) -> dict:
    found = await ctx.documents.get(ORGANIZATIONS, organization_id)
    if found is None:
        raise HTTPException(404)
    return found


def projection(*, fixed: bool, fails_on: str | None = None) -> Projection:
    """The organisations' read model: before the fix it shouts their names."""

    async def project(documents: DocumentStore, event: OrganizationRegistered, env: Envelope) -> None:
        if event.organization_id == fails_on:
            raise RuntimeError("a bug of the new projection")
        doc = await fresh_document(documents, ORGANIZATIONS, event.organization_id, env)
        if doc is not None:
            doc |= {"name": event.name if fixed else event.name.upper(), "department": event.department}
            await documents.put(ORGANIZATIONS, event.organization_id, doc)

    return project


def demo(project: Projection) -> Service:
    def subscribers(ctx: ServiceContext) -> list[Subscriber]:
        return [Subscriber.projecting(GROUP, ctx.documents, {OrganizationRegistered: project}, (ORGANIZATIONS,))]

    async def setup(ctx: ServiceContext) -> None:
        await ctx.documents.ensure_index(ORGANIZATIONS, ["department"])

    return Service("demo", public_routers=[router], subscribers=subscribers, on_start=setup)


def registered(n: int | str, version: int = 1) -> OutgoingMessage:
    event = OrganizationRegistered(
        organization_id=f"o{n}",
        name=f"Entraide {n}",
        kind="association",
        postal_code="69001",
        department="69",
        manager_ids=[f"manager-{n}"],
    )
    return OutgoingMessage.of(event.envelope(version))


@asynccontextmanager
async def serving(settings: Settings, service: Service) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, [service])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def names(client: httpx.AsyncClient, ids: list[str]) -> dict[str, str | None]:
    found = {}
    for organization_id in ids:
        answer = await client.get(f"/demo/organizations/{organization_id}")
        found[organization_id] = answer.json()["name"] if answer.status_code == 200 else None
    return found


async def indexed_fields(settings: Settings, documents: DocumentStore, collection: str) -> list[str]:
    """The fields of the secondary indexes of a collection, whatever the backend."""
    if settings.backend == "embedded":
        table = f"docs_{collection}"
        sql = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL"
        rows = await documents.inner._db.run(lambda c: c.execute(sql, (table,)).fetchall())  # type: ignore[attr-defined]
        return sorted(s.split("'$.")[1].split("'")[0] for (s,) in rows)
    indexes = await documents.inner._coll(collection).index_information()  # type: ignore[attr-defined]
    return sorted(field for name, spec in indexes.items() if name != "_id_" for field, _ in spec["key"])


@pytest.fixture
async def buggy_history(settings: Settings) -> list[str]:
    """Twelve organisations projected by the buggy projection, by a service that then stops."""
    ids = [f"o{n}" for n in range(12)]
    async with serving(settings, demo(projection(fixed=False))) as client:
        await client.app.state.runtime.bus.publish([registered(n) for n in range(12)])  # type: ignore[attr-defined]

        async def shouting() -> bool:
            return await names(client, ids) == {i: f"ENTRAIDE {i[1:]}" for i in ids}

        await eventually(shouting, what="the buggy read model")
    return ids


async def test_a_fixed_projection_replayed_rebuilds_the_read_model_while_the_service_serves(settings, buggy_history):
    ids = buggy_history
    async with serving(settings, demo(projection(fixed=True))) as client:  # the fix deployed
        bus = client.app.state.runtime.bus  # type: ignore[attr-defined]
        assert (await names(client, ids))["o3"] == "ENTRAIDE 3"  # the fix alone rewrites nothing
        seen: list[tuple[str, Any]] = []

        async def meanwhile(progress: Progress) -> None:
            """During the replay: the service answers from the live model, and new events arrive."""
            if progress.phase in ("rebuild", "catch_up") and progress.phase not in {p for p, _ in seen}:
                seen.append((progress.phase, (await names(client, ["o3"]))["o3"]))
            if progress.phase == "rebuild" and len(seen) == 1:
                await bus.publish([registered("late")])

                async def projected_live() -> bool:
                    return (await names(client, ["olate"]))["olate"] == "Entraide late"

                await eventually(projected_live, what="the live group handling an event during the replay")

        report = await replay_services([demo(projection(fixed=True))], settings, on_progress=meanwhile)

        assert seen == [("rebuild", "ENTRAIDE 3"), ("catch_up", "ENTRAIDE 3")]  # answered, from the live model
        assert report.groups == [GROUP] and report.unreadable == 0
        assert await names(client, [*ids, "olate"]) == {i: f"Entraide {i[1:]}" for i in [*ids, "olate"]}
        documents = client.app.state.runtime.context("demo").documents  # type: ignore[attr-defined]
        assert await indexed_fields(settings, documents, ORGANIZATIONS) == ["department"]
        assert await documents.count(shadow_of(ORGANIZATIONS)) == 0
        assert await documents.get(CONTROL, GROUP) is None

        await bus.publish([registered("after")])  # the group resumed, on the rebuilt model

        async def resumed() -> bool:
            return (await names(client, ["oafter"]))["oafter"] == "Entraide after"

        await eventually(resumed, what="the group resumed after the replay")


async def test_a_replay_failing_after_the_pause_leaves_the_live_model_and_resumes_the_group(settings, buggy_history):
    ids = buggy_history
    async with serving(settings, demo(projection(fixed=True))) as client:
        bus = client.app.state.runtime.bus  # type: ignore[attr-defined]
        phases: list[str] = []

        async def poison_arrives(progress: Progress) -> None:
            if progress.phase == "rebuild" and not phases:
                # handled by the live group (its projection is fine), then read again by the replay's catch-up
                await bus.publish([registered("poison")])

                async def projected_live() -> bool:
                    return (await names(client, ["opoison"]))["opoison"] == "Entraide poison"

                await eventually(projected_live, what="the live group handling the event")
            phases.append(progress.phase)

        with pytest.raises(ReplayFailed, match="a bug of the new projection"):
            await replay_services(
                [demo(projection(fixed=True, fails_on="opoison"))], settings, on_progress=poison_arrives
            )

        assert "pause" in phases and "swap" not in phases  # it failed after pausing the group
        assert (await names(client, ids))["o5"] == "ENTRAIDE 5"  # the live model as it was
        documents = client.app.state.runtime.context("demo").documents  # type: ignore[attr-defined]
        assert await documents.get(CONTROL, GROUP) is None
        assert await documents.count(shadow_of(ORGANIZATIONS)) == 0
        await bus.publish([registered("after")])

        async def resumed() -> bool:
            return (await names(client, ["oafter"]))["oafter"] == "Entraide after"

        await eventually(resumed, what="the group resumed after the failed replay")


async def test_a_second_replay_of_a_group_under_replay_stops_and_leaves_the_first_alone(settings, buggy_history):
    refused: list[ReplayFailed] = []

    async def second_replay(progress: Progress) -> None:
        if progress.phase == "rebuild" and not refused:
            with pytest.raises(ReplayFailed, match="déjà en cours") as second:
                await replay_services([demo(projection(fixed=True))], settings)
            refused.append(second.value)

    report = await replay_services([demo(projection(fixed=True))], settings, on_progress=second_replay)

    assert refused and report.groups == [GROUP]
    storage = open_storage(settings, "demo")
    try:
        assert (await storage.documents.get(ORGANIZATIONS, "o7"))["name"] == "Entraide 7"
    finally:
        await storage.close()


async def test_the_stores_load_and_swap_collections_keeping_the_live_indexes(storage):
    documents = storage.documents
    await documents.ensure_index("things", ["colour"], unique=True)
    await documents.put("things", "old", {"colour": "red"})
    await documents.load("things__rebuild", {"a": {"colour": "blue"}, "b": {"colour": "green"}}, unseen={"a", "b"})
    await documents.load("things__rebuild", {"b": None, "c": {"colour": "white", "tags": ["x", "é"]}})

    await documents.replace_collections({"things": "things__rebuild"})

    assert await documents.find("things", sort=[("colour", 1)]) == [
        {"colour": "blue"},
        {"colour": "white", "tags": ["x", "é"]},
    ]
    with pytest.raises(DuplicateKeyError):  # the live collection's unique index, now on the rebuilt one
        await documents.put("things", "d", {"colour": "blue"})
    assert await documents.count("things__rebuild") == 0
    await documents.drop_collection("things")
    assert await documents.count("things") == 0


def command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env_of(settings),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


async def test_the_replay_command_prints_its_progress_and_exits_1_on_failure(settings):
    bus = open_bus(settings)
    try:
        await bus.publish([registered(n) for n in range(20)])
    finally:
        await bus.close()

    done = command(settings, "services.moderation", "replay")
    assert done.returncode == 0, done.stderr
    assert "reconstruction : 20 / 20 événements (100 %)" in done.stdout
    for phase in ("pause des groupes", "rattrapage", "bascule"):
        assert phase in done.stdout
    assert "Modèles de lecture reconstruits (moderation.queue" in done.stdout
    storage = open_storage(settings, "moderation")
    try:
        assert await storage.documents.count("organizations") == 20
        assert await storage.documents.count("queue", {"pending": True}) == 20
    finally:
        await storage.close()

    unknown = command(settings, "services.missions", "replay", "--group", "missions.nothing")
    assert unknown.returncode == 1 and "missions.nothing" in unknown.stderr and "Traceback" not in unknown.stderr
    nothing = command(settings, "services.gateway", "replay")
    assert nothing.returncode == 0 and "Rien à rejouer" in nothing.stdout


async def test_every_service_replays_its_read_models_from_a_platform_history(settings):
    bus = open_bus(settings)
    try:
        kinds = await publish_history(bus, 1500)
    finally:
        await bus.close()

    report = await replay_services(SERVICES, settings)

    assert report.events == 1500 and report.unreadable == 0 and report.duplicates == 0
    assert set(report.services) == {"missions", "moderation", "volunteers", "matching", "notifications"}
    registered_volunteers = kinds["VolunteerRegistered"]
    published = kinds["MissionPublished"]
    expected = {
        "missions": {"missions": kinds["MissionDrafted"], "organizations": kinds["OrganizationRegistered"]},
        "moderation": {"volunteers": registered_volunteers, "policies": kinds["ModerationPolicyChanged"]},
        "volunteers": {"volunteers": registered_volunteers, "missions": published},
        "matching": {"volunteers": registered_volunteers, "missions": published},
        "notifications": {
            "people": registered_volunteers + kinds["ReferentAppointed"],
            "applications": kinds["ApplicationReceived"],
        },
    }
    for service, counts in expected.items():
        storage = open_storage(settings, service)
        try:
            found = {c: await storage.documents.count(c) for c in counts}
            assert found == counts, service
        finally:
            await storage.close()


async def test_a_replay_refuses_a_history_the_broker_no_longer_holds(servers, tmp_path):
    settings = make_settings("kafka+mongo", tmp_path, servers)
    bus = open_bus(settings)
    try:
        await bus.publish([registered(n) for n in range(12)])
        ends = await bus.last_offsets(["missions.organization"])
    finally:
        await bus.close()
    partition = next(p for (_, p), last in ends.items() if last >= 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:  # what a retention does to a topic created before ADR 0011
        topic = TopicPartition(f"{settings.namespace}missions.organization", partition)
        await admin.delete_records({topic: RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()

    with pytest.raises(ReplayFailed, match="historique"):
        await replay_services([demo(projection(fixed=True))], settings)
    storage = open_storage(settings, "demo")
    try:
        assert await storage.documents.count(ORGANIZATIONS) == 0  # nothing swapped in
    finally:
        await storage.close()
