"""Processes for the cross-process tests: `produce` appends and relays, `consume` projects.

python -m tests.integration.worker produce STREAMS VERSIONS
python -m tests.integration.worker consume [SECONDS_PER_EVENT]
Settings come from CIVIQUE_* variables, like any service.
"""

import asyncio
import sys
from collections.abc import Callable

from shared.events import Envelope, MissionReopened
from shared.runtime.app import Runtime, Service, ServiceContext
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import Subscriber
from shared.runtime.relay import Relay
from shared.runtime.settings import Settings

PRODUCER, CONSUMER = "producer", "consumer"
READ_MODEL = "reopenings"


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


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "produce":
        asyncio.run(produce(int(args[0]), int(args[1])))
    else:
        asyncio.run(consume(float(args[0]) if args else 0.0))
