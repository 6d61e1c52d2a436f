"""The runtime under faults, on both backends: a store that goes away under running consumers and comes
back, crashed tasks restarted, readiness that answers fast and names a dead or stuck consumer, a clean
shutdown on SIGTERM."""

import asyncio
import json
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter

import httpx
from aiokafka.errors import KafkaConnectionError, KafkaError
from prometheus_client import REGISTRY
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from shared.events import Envelope, MissionReopened
from shared.runtime.app import Service, ServiceContext, create_app
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import ConsumerRunner, Subscriber, dead_letter_topic, is_transient
from shared.runtime.ports import DuplicateKeyError, OutgoingMessage, Unavailable
from shared.runtime.tasks import cancel, start_supervised
from tests.conftest import env_of, eventually, free_port, until_ready
from tests.faults import store_outage


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def reopened(stream: str, version: int) -> Envelope:
    return MissionReopened(mission_id=stream, organization_id="o", free_places=version).envelope(version)


class Projection:
    """Writes each event into the (possibly failing) document store, then notes it as handled."""

    def __init__(self, documents) -> None:
        self.documents = documents
        self.handled: list[str] = []

    async def __call__(self, event: MissionReopened, envelope: Envelope) -> None:
        await self.documents.put("reopenings", f"{event.mission_id}:{envelope.stream_version}", {"ok": True})
        self.handled.append(f"{event.mission_id}:{envelope.stream_version}")

    async def handled_at_least(self, n: int) -> bool:
        return len(self.handled) >= n


async def test_a_store_outage_under_a_running_consumer_loses_nothing_and_doubles_nothing(settings):
    group = f"outage-{uuid.uuid4().hex[:8]}"
    async with store_outage(settings) as outage:
        storage, bus = open_storage(outage.settings, "faults"), open_bus(settings)
        documents = outage.wrap(storage.documents)
        projection = Projection(documents)
        runner = ConsumerRunner(
            Subscriber(group, {MissionReopened: projection}),
            bus,
            documents,
            max_attempts=2,
            backoff=0.01,
            max_backoff=0.2,
        )
        await runner.start()
        try:
            before = [reopened(f"m{s}", 1) for s in range(6)]
            await bus.publish([OutgoingMessage.of(e) for e in before])
            await eventually(lambda: projection.handled_at_least(6), what="the events before the outage")

            await outage.cut()
            during = [reopened(f"m{s}", 2) for s in range(6)]
            await bus.publish([OutgoingMessage.of(e) for e in during])

            async def waiting_out_the_outage() -> bool:
                return (
                    sample(
                        "civique_events_consumed_total",
                        {"group": group, "topic": "missions.mission", "outcome": "outage_retried"},
                    )
                    >= 2
                )

            await eventually(waiting_out_the_outage, within=20, what="the consumer to meet the outage")
            assert runner.subscription.status() == "ok"  # waiting, not crashed
            await outage.restore()
            await eventually(lambda: projection.handled_at_least(12), within=30, what="every event after the outage")
            assert Counter(projection.handled) == Counter(f"m{s}:{v}" for s in range(6) for v in (1, 2))

            async def all_committed() -> bool:  # committed right after each batch's writes and position
                return sum((await bus.lag(group, ["missions.mission"])).values()) == 0

            await eventually(all_committed, what="every event committed")
            assert await storage.documents.count("reopenings") == 12
            dead = await bus.lag(f"{group}-dlq-watch", [dead_letter_topic("missions.mission")])
            assert sum(dead.values()) == 0  # an outage is no reason to dead-letter anything
            assert sample("civique_task_restarts_total", {"task": f"consumer:{group}"}) == 0
        finally:
            await runner.stop()
            await storage.close()
            await bus.close()


async def test_a_crashed_task_is_restarted_with_backoff_and_counted():
    runs = []

    async def crashes_twice() -> None:
        runs.append(time.monotonic())
        if len(runs) <= 2:
            raise ConnectionError("store gone")
        await asyncio.Event().wait()

    name = f"job-{uuid.uuid4().hex[:8]}"
    supervised = start_supervised(crashes_twice, name=name, backoff_s=0.05)
    try:

        async def third_run() -> bool:
            return len(runs) == 3 and supervised.status() == "ok"

        await eventually(third_run, within=5, what="the third run")
        assert sample("civique_task_restarts_total", {"task": name}) == 2
        assert runs[1] - runs[0] >= 0.05 and runs[2] - runs[1] >= 0.1  # the pause doubles
    finally:
        await cancel(supervised)
    assert supervised.status() == "failed: stopped"


def demo_subscribers(gate: asyncio.Event):
    def subscribers(ctx: ServiceContext) -> list[Subscriber]:
        async def project(event: MissionReopened, envelope: Envelope) -> None:
            await gate.wait()
            await ctx.documents.put("missions", event.mission_id, {"free_places": event.free_places})

        return [Subscriber("demo.faults", {MissionReopened: project})]

    return subscribers


async def append(ctx: ServiceContext, stream: str) -> None:
    version = len(await ctx.store.read(stream))
    await ctx.store.append(stream, version, [reopened(stream, version + 1)])


async def test_readiness_names_a_stuck_consumer_until_it_moves_again(settings):
    gate = asyncio.Event()
    tuned = settings.model_copy(update={"consumer_stuck_after_s": 0.3, "lag_interval_s": 0.05})
    app = create_app(tuned, [Service("demo", subscribers=demo_subscribers(gate))])
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            await append(runtime.context("demo"), "m-1")

            async def named_stuck() -> bool:
                answer = await client.get("/readyz")
                return answer.status_code == 503 and answer.json()["checks"]["consumer:demo.faults"].startswith(
                    "stuck: lag 1"
                )

            await eventually(named_stuck, within=20, what="the consumer reported stuck")
            gate.set()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, within=20, what="ready again once it moved")


async def test_readiness_names_a_dead_consumer(settings):
    gate = asyncio.Event()
    gate.set()
    app = create_app(settings, [Service("demo", subscribers=demo_subscribers(gate))])
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            context = runtime.context("demo")
            restarts = sample("civique_task_restarts_total", {"task": "consumer:demo.faults"})
            await append(context, "m-1")
            await runtime.running["demo"].relay.publish_pending()
            # the store closed under the running consumer: its inbox lookup fails for good, the task crashes
            await context.storage.close()

            async def named_dead() -> bool:
                checks = (await client.get("/readyz")).json()["checks"]
                return checks["consumer:demo.faults"].startswith("failed: restarting after")

            await eventually(named_dead, within=20, what="the dead consumer named")

            async def restarted() -> bool:  # and restarted, with backoff, again and again
                return sample("civique_task_restarts_total", {"task": "consumer:demo.faults"}) >= restarts + 1

            await eventually(restarted, within=20, what="a restart counted")


async def test_readiness_answers_within_a_second_during_a_store_outage(settings):
    async with store_outage(settings, busy_timeout=30) as outage:
        app = create_app(outage.settings, [Service("demo")])
        async with app.router.lifespan_context(app):
            storage = app.state.runtime.context("demo").storage
            storage.store, storage.documents = outage.wrap(storage.store), outage.wrap(storage.documents)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                assert (await client.get("/readyz")).status_code == 200
                await outage.cut()
                for _ in range(2):  # the first ping may fail at once on a reset connection, the next one waits
                    started = time.monotonic()
                    answer = await client.get("/readyz")
                    assert time.monotonic() - started < 1.0
                    assert answer.status_code == 503
                    checks = answer.json()["checks"]
                    assert checks["demo.documents"] == "timeout" or checks["demo.documents"].startswith("failed")
                    assert checks["bus"] == "ok"
                assert checks["demo.store"] == "timeout"
                await outage.restore()

                async def ready() -> bool:
                    return (await client.get("/readyz")).status_code == 200

                await eventually(ready, within=20, what="ready once the store is back")


async def test_sigterm_ends_the_process_with_a_stopping_and_a_stopped_line(settings):
    port = free_port()
    secrets = {"internal_token": "t", "jwt_secret": "j" * 32, "link_secret": "l"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from shared.runtime.app import Service, run; run([Service('demo')], title='demo')",
        env=env_of(settings.model_copy(update={"port": port, **secrets})),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await until_ready(f"http://127.0.0.1:{port}", within=30)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            output = (await process.communicate())[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.index("started") < events.index("stopping") < events.index("stopped"), output[-2000:]
    stopped = lines[events.index("stopped")]
    assert stopped["outbox_left"] == {"demo": 0} and stopped["published_on_stop"] == {"demo": 0}
    assert all("timestamp" in line and "level" in line for line in lines)  # uvicorn's lines too, as JSON
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
    assert process.returncode == -signal.SIGTERM  # uvicorn shuts down cleanly, then re-raises the signal


def test_outages_are_told_from_handler_failures():
    assert is_transient(AutoReconnect("connection reset"))
    assert is_transient(ServerSelectionTimeoutError("no server"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(sqlite3.OperationalError("database or disk is full"))
    assert is_transient(KafkaConnectionError("broker down"))
    assert is_transient(Unavailable("the volunteers service"))
    try:
        try:
            raise AutoReconnect("reset")
        except AutoReconnect as exc:
            raise RuntimeError("projection failed") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)  # a handler wrapping the store's error is still waiting for the store
    assert not is_transient(RuntimeError("bug"))
    assert not is_transient(sqlite3.OperationalError("no such column: x"))
    assert not is_transient(DuplicateKeyError("inbox/x"))
    assert not is_transient(KafkaError("message too large"))
