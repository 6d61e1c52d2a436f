"""Dead letters on both backends: a poison event is parked with its error, listed, replayed to its topic once
the cause is fixed (the group that failed handles it, the one that had handled it does not again), and
settled; the operator's command line says the same."""

import subprocess
import sys
import uuid
from collections import Counter

from shared.events import Envelope, MissionReopened
from shared.runtime import dead_letters
from shared.runtime.backend import open_bus, open_storage
from shared.runtime.consumers import ConsumerRunner, Subscriber
from shared.runtime.ports import OutgoingMessage
from tests.conftest import ROOT, env_of, eventually

DLQ = "missions.mission.dlq"


class Handler:
    """Counts the events it handled; fails on the mission it is told is broken."""

    def __init__(self, broken: str | None = None) -> None:
        self.broken, self.handled = broken, Counter[str]()

    async def __call__(self, event: MissionReopened, envelope: Envelope) -> None:
        if event.mission_id == self.broken:
            raise ValueError(f"mission {event.mission_id} illisible")
        self.handled[event.mission_id] += 1


def reopened(mission: str) -> Envelope:
    return MissionReopened(mission_id=mission, organization_id="o", free_places=1).envelope(1)


async def test_a_dead_letter_is_listed_replayed_to_its_topic_and_settled(settings):
    storage, bus = open_storage(settings, "faults"), open_bus(settings)
    suffix = uuid.uuid4().hex[:6]
    failing, healthy = Handler(broken="m2"), Handler()
    runners = [
        ConsumerRunner(
            Subscriber(f"fragile.{suffix}", {MissionReopened: failing}),
            bus,
            storage.documents,
            max_attempts=2,
            backoff=0.01,
        ),
        ConsumerRunner(Subscriber(f"solid.{suffix}", {MissionReopened: healthy}), bus, storage.documents),
    ]
    for runner in runners:
        await runner.start()
    try:
        await bus.publish([OutgoingMessage.of(reopened(m)) for m in ("m1", "m2", "m3")])

        async def parked() -> bool:
            handled = sum(healthy.handled.values()) == 3 and sum(failing.handled.values()) == 2
            return handled and (await dead_letters.pending(bus, [DLQ]))[DLQ] == 1

        await eventually(parked, what="the poison event in the dead letters, the rest handled")
        assert failing.handled == {"m1": 1, "m3": 1}

        [letter] = await dead_letters.read(bus, ["missions.mission"])
        assert not letter.settled and letter.key == "m2" and letter.original_topic == "missions.mission"
        assert letter.header("x-group") == f"fragile.{suffix}" and letter.header("x-error-type") == "ValueError"
        assert letter.header("x-attempts") == "2" and letter.header("ce_type") == "MissionReopened"
        assert "illisible" in letter.describe() and "en attente" in letter.describe()

        failing.broken = None  # the cause is fixed
        [replayed] = await dead_letters.settle(bus, [DLQ], replay=True)
        assert replayed.event_id == letter.event_id

        async def handled_again() -> bool:
            return failing.handled["m2"] == 1

        await eventually(handled_again, what="the replayed event handled by the group that had failed")
        assert (await dead_letters.pending(bus))[DLQ] == 0
        [settled] = await dead_letters.read(bus, [DLQ])
        assert settled.settled and settled.offset == letter.offset

        async def all_committed() -> bool:  # the healthy group saw the replayed record too, and skipped it
            lags = [await bus.lag(r.group, ["missions.mission"]) for r in runners]
            return all(not any(lag.values()) for lag in lags)

        await eventually(all_committed, what="both groups past the replayed record")
        assert healthy.handled == {"m1": 1, "m2": 1, "m3": 1}
        assert failing.handled == {"m1": 1, "m2": 1, "m3": 1}
        assert await dead_letters.settle(bus, [DLQ], replay=True) == []  # nothing left: nothing replayed twice
    finally:
        for runner in runners:
            await runner.stop()
        await bus.close()
        await storage.close()


async def test_the_operators_command_lists_discards_and_refuses_an_unknown_topic(settings):
    bus = open_bus(settings)
    letter = OutgoingMessage(
        DLQ, "m9", b"not json", (("x-group", b"missions.read_models"), ("x-error-type", b"ValidationError"))
    )
    try:
        await bus.publish([letter])
    finally:
        await bus.close()

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services", "dead-letters", *args],
            cwd=ROOT,
            env=env_of(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = command("list", "--topic", "missions.mission")
    assert listed.returncode == 0, listed.stderr
    assert "groupe missions.read_models" in listed.stdout and "1 lettre(s) morte(s) en attente" in listed.stdout

    discarded = command("discard", "--topic", DLQ)
    assert discarded.returncode == 0, discarded.stderr
    assert "1 lettre(s) morte(s) écartée(s)" in discarded.stdout

    bus = open_bus(settings)
    try:
        assert (await dead_letters.pending(bus, [DLQ]))[DLQ] == 0
    finally:
        await bus.close()

    unknown = command("list", "--topic", "nulle.part")
    assert unknown.returncode == 1 and "Topic inconnu : nulle.part" in unknown.stderr
