"""Processes for the cross-process tests: `produce` appends and relays, `consume` projects, `serve` is a service
run like any (`run`: HTTP, relay, consumers, stopped by SIGTERM) whose handler has an effect outside its batch.

python -m tests.integration.worker produce STREAMS VERSIONS
python -m tests.integration.worker consume [SECONDS_PER_EVENT]
python -m tests.integration.worker serve [SECONDS_PER_EVENT]
Settings come from CIVIQUE_* variables, like any service.
"""

import asyncio
import sys
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends

from shared.events import Envelope, MissionReopened
from shared.runtime.app import Runtime, Service, ServiceContext, run, service_context
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import Subscriber
from shared.runtime.relay import Relay
from shared.runtime.settings import Settings

PRODUCER, CONSUMER = "producer", "consumer"
READ_MODEL = "reopenings"
DEMO, EFFECTS = "demo", "effects.log"  # `serve`'s service, and the file its handler writes a line to per event


async def produce(streams: int, versions: int) -> None:
    settings = Settings()
    storage, bus = open_storage(settings, PRODUCER), open_bus(settings)
    for version in range(1, versions + 1):
        for s in range(streams):
            event = MissionReopened(mission_id=f"m{s}", organization_id="o", free_places=version)
            await storage.store.append(f"m{s}", version - 1, [event.envelope(version)])
    relay = Relay(PRODUCER, storage.store, bus)
    while await relay.publish_pending():
        pass
    await storage.close()
    await bus.close()


def reopenings(delay: float) -> Callable[[ServiceContext], list[Subscriber]]:
    def subscribers(ctx: ServiceContext) -> list[Subscriber]:
        async def on_reopened(event: MissionReopened, envelope: Envelope) -> None:
            await asyncio.sleep(delay)  # simulated work, so the test can kill this process mid-stream
            doc = await ctx.documents.get(READ_MODEL, event.mission_id) or {"versions": []}
            if envelope.stream_version in doc["versions"]:
                return  # replay after a crash between handling and the inbox record
            doc["versions"].append(envelope.stream_version)
            await ctx.documents.put(READ_MODEL, event.mission_id, doc)

        return [Subscriber("worker.reopenings", {MissionReopened: on_reopened})]

    return subscribers


async def consume(delay: float) -> None:
    runtime = Runtime(Settings(), [Service(CONSUMER, subscribers=reopenings(delay))])
    await runtime.start()
    print("consuming", flush=True)
    await asyncio.Event().wait()


def with_effects(delay: float) -> Callable[[ServiceContext], list[Subscriber]]:
    """A group whose handler does what no batch can undo, like an e-mail: a line in a file per call. A batch
    handed over twice would write its lines twice."""

    def subscribers(ctx: ServiceContext) -> list[Subscriber]:
        effects = ctx.settings.data_dir / EFFECTS

        async def on_reopened(event: MissionReopened, envelope: Envelope) -> None:
            await asyncio.sleep(delay)
            with effects.open("a") as out:
                out.write(f"{event.mission_id}:{envelope.stream_version}\n")

        # small batches: a SIGTERM finds the backlog half done, not one poll from its end
        return [Subscriber("worker.effects", {MissionReopened: on_reopened}, batch=10)]

    return subscribers


appends = APIRouter()


@appends.post("/demo/reopenings/{mission_id}", status_code=201)
async def append_reopening(
    mission_id: str, ctx: Annotated[ServiceContext, Depends(service_context(DEMO))]
) -> dict[str, str]:
    """Appends a stream's first event: the relay of the process publishes it."""
    event = MissionReopened(mission_id=mission_id, organization_id="o", free_places=1)
    await ctx.store.append(mission_id, 0, [event.envelope(1)])
    return {"appended": mission_id}


def serve(delay: float) -> None:
    (Settings().data_dir).mkdir(parents=True, exist_ok=True)
    run([Service(DEMO, public_routers=[appends], subscribers=with_effects(delay))], title="demo")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "produce":
        asyncio.run(produce(int(args[0]), int(args[1])))
    elif command == "serve":
        serve(float(args[0]) if args else 0.0)
    else:
        asyncio.run(consume(float(args[0]) if args else 0.0))
