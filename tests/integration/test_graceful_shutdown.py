"""SIGTERM to a real service process mid-stream, as Kubernetes stops a pod: it stops taking requests, finishes
the batch in hand and commits it, publishes what its relay has pending, closes; restarted, it goes on where it
stopped. Nothing lost, nothing doubled — counted by an effect no batch can undo (a line per handled event)."""

import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import httpx

from shared.events import MissionReopened
from shared.runtime.backend import open_bus
from shared.runtime.ports import OutgoingMessage
from tests.conftest import ROOT, env_of, eventually, free_port, until_ready
from tests.integration.worker import EFFECTS

STREAMS, VERSIONS = 10, 30
SECRETS = {"internal_token": "t", "jwt_secret": "j" * 32, "link_secret": "l"}


def effects(settings) -> Counter[str]:
    path = Path(settings.data_dir) / EFFECTS
    return Counter(path.read_text().split()) if path.exists() else Counter()


async def start(settings, delay: float) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.worker",
        "serve",
        str(delay),
        cwd=ROOT,
        env=env_of(settings.model_copy(update={"port": port, "workers": 0, **SECRETS})),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    await until_ready(url, within=60)
    return process, url


async def test_sigterm_mid_stream_loses_nothing_and_doubles_nothing(settings):
    bus = open_bus(settings)
    try:  # a backlog for the consumer group, handled at 10 ms an event
        await bus.publish(
            [
                OutgoingMessage.of(MissionReopened(mission_id=f"m{s}", organization_id="o", free_places=v).envelope(v))
                for v in range(1, VERSIONS + 1)
                for s in range(STREAMS)
            ]
        )
    finally:
        await bus.close()
    expected = {f"m{s}:{v}" for s in range(STREAMS) for v in range(1, VERSIONS + 1)}
    accepted: list[str] = []  # appended for sure (201); and in doubt: sent, no answer (the listener closing)
    in_doubt: list[str] = []

    process, url = await start(settings, 0.01)
    try:

        async def keep_appending() -> None:  # requests all along, through the SIGTERM
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                for n in range(10_000):
                    try:
                        answer = await client.post(f"/demo/reopenings/live{n}")
                    except httpx.ConnectError:
                        return  # the listener is closed: the process stopped taking requests
                    except httpx.TransportError:
                        in_doubt.append(f"live{n}:1")
                        return
                    assert answer.status_code == 201, answer.text
                    accepted.append(f"live{n}:1")

        appending = asyncio.create_task(keep_appending())

        async def mid_stream() -> bool:
            return sum(effects(settings).values()) >= 40 and len(accepted) >= 20

        await eventually(mid_stream, within=60, what="events handled and requests accepted")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):  # within the pod's grace period
            output = (await process.communicate())[0].decode()
        await asyncio.wait_for(appending, 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.index("started") < events.index("stopping") < events.index("stopped"), output[-3000:]
    assert lines[events.index("stopped")]["outbox_left"] == {"demo": 0}, output[-3000:]  # the relay published it all
    assert process.returncode == -signal.SIGTERM
    before = effects(settings)
    assert len(expected & set(before)) < len(expected), "the backlog was done before the SIGTERM: not mid-stream"
    assert all(n == 1 for n in before.values()), [key for key, n in before.items() if n > 1]

    expected |= set(accepted)
    restarted, _ = await start(settings, 0.0)
    try:

        async def complete() -> bool:
            return expected <= set(effects(settings))

        await eventually(complete, within=90, what="every event handled after the restart")
    finally:
        restarted.terminate()
        await restarted.wait()
    after = effects(settings)
    assert [key for key, n in after.items() if n > 1] == []  # nothing doubled
    assert set(after) - expected <= set(in_doubt)  # nothing but what was sent
