"""The app factory on both backends: health, readiness, metrics, errors, correlation ids, and a
command's event travelling store → relay → bus → consumer → read model."""

import json
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
import structlog
from fastapi import APIRouter, Depends
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict

from shared.events import Actor, Envelope, MissionReopened
from shared.runtime.app import Service, ServiceContext, create_app, service_context
from shared.runtime.consumers import Subscriber
from shared.runtime.problems import Problem
from tests.conftest import eventually

router = APIRouter()
log = structlog.get_logger("test.demo")
Demo = Annotated[ServiceContext, Depends(service_context("demo"))]


class Reopen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    free_places: int


@router.post("/demo/missions/{mission_id}/reopen", status_code=202)
async def reopen(mission_id: str, body: Reopen, ctx: Demo) -> dict[str, int]:
    if body.free_places < 1:
        raise Problem(422, "no_free_place", "Une mission rouverte doit avoir au moins une place libre.")
    version = len(await ctx.store.read(mission_id))
    event = MissionReopened(mission_id=mission_id, organization_id="o", free_places=body.free_places)
    envelope = event.envelope(
        version + 1,
        actor=Actor(id="u1", role="manager"),
        correlation_id=structlog.contextvars.get_contextvars()["correlation_id"],
    )
    await ctx.store.append(mission_id, version, [envelope])
    log.info("reopen_requested", mission_id=mission_id)
    return {"version": version + 1}


@router.get("/demo/missions/{mission_id}")
async def read(mission_id: str, ctx: Demo) -> dict:
    return await ctx.documents.get("missions", mission_id) or {}


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    async def project(event: MissionReopened, envelope: Envelope) -> None:
        await ctx.documents.put("missions", event.mission_id, {"free_places": event.free_places})
        log.info("reopen_projected", mission_id=event.mission_id)

    return [Subscriber("demo.missions", {MissionReopened: project})]


@pytest.fixture
async def client(settings):
    app = create_app(settings, [Service("demo", public_routers=[router], subscribers=subscribers)])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            client.app = app
            yield client


async def test_health_and_readiness_check_store_and_bus(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "bus": "ok",
        "demo.store": "ok",
        "demo.documents": "ok",
        "relay:demo": "ok",
        "consumer:demo.missions": "ok",
        "task:runtime:gauges": "ok",
    }


async def test_readiness_fails_and_names_what_is_down(client):
    await client.app.state.runtime.context("demo").storage.close()
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["demo.store"].startswith("failed")
    assert ready.json()["checks"]["bus"] == "ok"


async def test_a_command_reaches_the_read_model_and_the_metrics_count_it(client):
    answer = await client.post("/demo/missions/m-1/reopen", json={"free_places": 3})
    assert answer.status_code == 202

    async def projected() -> bool:
        return (await client.get("/demo/missions/m-1")).json() == {"free_places": 3}

    await eventually(projected, what="the read model")
    metrics = (await client.get("/metrics")).text
    assert 'civique_events_appended_total{service="demo",type="MissionReopened"}' in metrics
    assert 'civique_events_published_total{service="demo",topic="missions.mission"}' in metrics
    assert 'civique_events_consumed_total{group="demo.missions",outcome="handled",topic="missions.mission"}' in metrics
    assert 'civique_http_request_seconds_count{method="POST",route="/demo/missions/{mission_id}/reopen"' in metrics
    for family in ("civique_consumer_lag", "civique_outbox_backlog", "civique_dead_letters", "civique_handler_seconds"):
        assert family in metrics


async def test_client_mistakes_get_a_problem_with_a_code_and_a_french_detail(client):
    unknown_field = await client.post("/demo/missions/m-1/reopen", json={"free_places": 2, "x": 1})
    assert unknown_field.status_code == 422
    assert unknown_field.json()["code"] == "invalid_request"
    assert "x" in unknown_field.json()["fields"]
    refused = await client.post("/demo/missions/m-1/reopen", json={"free_places": 0})
    assert refused.json() == {
        "status": 422,
        "code": "no_free_place",
        "detail": "Une mission rouverte doit avoir au moins une place libre.",
    }
    not_json = await client.post(
        "/demo/missions/m-1/reopen", content=b"{", headers={"content-type": "application/json"}
    )
    assert (not_json.status_code, not_json.json()["code"]) == (400, "malformed_json")
    assert list(not_json.json()["fields"]) == ["body"]  # not a character offset
    missing = await client.get("/nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert await client.app.state.runtime.context("demo").store.read("m-1") == []


async def test_the_correlation_id_is_echoed_and_travels_into_the_logs(client, capsys):
    answer = await client.post(
        "/demo/missions/m-2/reopen", json={"free_places": 1}, headers={"x-correlation-id": "corr-123"}
    )
    assert answer.headers["x-correlation-id"] == "corr-123"
    assert len((await client.get("/healthz")).headers["x-correlation-id"]) == 36

    async def projected() -> bool:
        return (await client.get("/demo/missions/m-2")).json() == {"free_places": 1}

    await eventually(projected, what="the projection")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    requested = next(line for line in lines if line["event"] == "reopen_requested")
    handled = next(line for line in lines if line["event"] == "reopen_projected")
    assert requested["correlation_id"] == handled["correlation_id"] == "corr-123"
    assert handled["group"] == "demo.missions"
    assert handled["event_type"] == "MissionReopened"
    assert handled["causation_id"] is None


@asynccontextmanager
async def demo_app(settings, *, logs: list[dict] | None = None):
    """The demo service running; with `logs`, what it logs (from start to stop) is appended there."""
    app = create_app(settings, [Service("demo", public_routers=[router], subscribers=subscribers)])
    with structlog.testing.capture_logs() as captured:  # after create_app: it configures the logs
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
                client.app = app
                yield client
    if logs is not None:
        logs.extend(captured)


def lag_gauge(settings) -> float:
    return sum(
        REGISTRY.get_sample_value(
            "civique_consumer_lag", {"group": "demo.missions", "topic": "missions.mission", "partition": str(p)}
        )
        or 0.0
        for p in range(settings.partitions)
    )


async def test_the_lag_gauge_reads_the_committed_lag_on_a_schedule_even_when_the_group_does_not_consume(settings):
    async with demo_app(settings.model_copy(update={"lag_interval_s": 0.05})) as client:

        async def gauge_is(n: int) -> bool:
            return lag_gauge(settings) == n

        await eventually(lambda: gauge_is(0), what="the gauge at zero")
        runtime = client.app.state.runtime
        await runtime.running["demo"].runners[0].stop()  # the group's only member is gone
        for mission in ("m-1", "m-2", "m-3"):
            assert (await client.post(f"/demo/missions/{mission}/reopen", json={"free_places": 1})).status_code == 202
        await eventually(lambda: gauge_is(3), what="the gauge following the backlog of a group that is not consuming")


async def test_stopping_logs_what_it_drained(settings):
    logs: list[dict] = []
    async with demo_app(settings, logs=logs) as client:
        assert (await client.post("/demo/missions/m-1/reopen", json={"free_places": 1})).status_code == 202
    events = [line["event"] for line in logs]
    assert events.index("started") < events.index("stopping") < events.index("stopped")
    stopped = next(line for line in logs if line["event"] == "stopped")
    assert stopped["outbox_left"] == {"demo": 0}
    assert stopped["published_on_stop"]["demo"] in (0, 1)  # the relay may have published it before the stop
    assert set(stopped["consumer_lag_left"]) == {"demo.missions"}


pages = APIRouter()


@pages.get("/bonjour")
async def hello() -> dict[str, str]:
    return {"bonjour": "le monde"}


async def test_a_service_keeping_no_data_gets_no_storage_relay_or_consumer(settings) -> None:
    installed = []
    site = Service("site", public_routers=[pages], keeps_data=False, install=installed.append)
    app = create_app(settings, [site])
    assert installed == [app]  # its app-wide additions, once
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            assert (await client.get("/bonjour")).json() == {"bonjour": "le monde"}
            ready = (await client.get("/readyz")).json()
        assert "site" not in app.state.runtime.running
    assert ready["status"] == "ok" and not any(check.startswith(("site", "relay:site")) for check in ready["checks"])
    assert not list(settings.data_dir.glob("*site*"))
