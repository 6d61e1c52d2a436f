"""Events cross process boundaries through relay and bus; a consumer killed with -9 loses and doubles nothing."""

import signal
import subprocess
import sys

import pytest

from shared.runtime.backend import open_storage
from shared.runtime.settings import Settings
from tests.conftest import ROOT, env_of, eventually
from tests.integration.worker import CONSUMER, READ_MODEL

STREAMS, VERSIONS = 10, 30


def worker(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.worker", *args],
        cwd=ROOT,
        env=env_of(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
async def read_model(settings):
    storage = open_storage(settings, CONSUMER)
    yield storage.documents
    await storage.close()


async def handled(documents) -> dict[str, list[int]]:
    return {f"m{s}": (await documents.get(READ_MODEL, f"m{s}") or {"versions": []})["versions"] for s in range(STREAMS)}


def all_handled_once(seen: dict[str, list[int]]) -> bool:
    return all(versions == list(range(1, VERSIONS + 1)) for versions in seen.values())


async def test_one_process_appends_another_consumes(settings, read_model):
    consumer = worker(settings, "consume")
    try:
        producer = worker(settings, "produce", str(STREAMS), str(VERSIONS))
        assert producer.wait(timeout=120) == 0, producer.stderr.read().decode()[-2000:]

        async def complete() -> bool:
            return sum(len(v) for v in (await handled(read_model)).values()) >= STREAMS * VERSIONS

        await eventually(complete, within=60, what="every event in the consumer's read model")
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    assert all_handled_once(await handled(read_model))


async def test_a_consumer_killed_mid_stream_handles_every_event_exactly_once(settings, read_model):
    producer = worker(settings, "produce", str(STREAMS), str(VERSIONS))
    assert producer.wait(timeout=120) == 0, producer.stderr.read().decode()[-2000:]

    slow = worker(settings, "consume", "0.01")

    async def some_handled() -> bool:
        return sum(len(v) for v in (await handled(read_model)).values()) >= 40

    try:
        await eventually(some_handled, within=60, what="the first events")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
    before_restart = sum(len(v) for v in (await handled(read_model)).values())
    assert before_restart < STREAMS * VERSIONS, "the consumer finished before it was killed"

    restarted = worker(settings, "consume")
    try:

        async def complete() -> bool:
            return sum(len(v) for v in (await handled(read_model)).values()) >= STREAMS * VERSIONS

        await eventually(complete, within=90, what="the rest after the restart")
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    assert all_handled_once(await handled(read_model))
