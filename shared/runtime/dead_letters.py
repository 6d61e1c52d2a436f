"""Dead letters: what a consumer group could not handle, parked in `<topic>.dlq` by the consumer runner with
the error in headers (group, error type and message, attempts, original partition and offset). An operator
lists them, and once the cause is fixed replays them to their topic, or discards them.

A letter is settled once the consumer group `operations.dead_letters` has committed past it: `replay` and
`discard` move that group on, `list` reads with a group of its own and settles nothing. The group's lag is
`civique_dead_letters_pending`, which the alerts watch. A replayed letter goes back to its topic with its
key, value and the event's headers: every group of the topic gets the event again; the ones that handled it
skip it (as seen, or by their idempotency: version guards, keys, ADR 0009), the one that failed handles it.
"""

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from shared.runtime.metrics import DEAD_LETTERS_PENDING
from shared.runtime.ports import EventBus, Message, Offsets, OutgoingMessage
from shared.runtime.topics import dead_letter_topics

SETTLED = "operations.dead_letters"  # the group whose committed offsets say which letters are settled
PEEK = "operations.dead_letters.peek"  # a group of its own for each `list`: reading settles nothing
ERROR_HEADERS = (
    "x-group",
    "x-error-type",
    "x-error-message",
    "x-attempts",
    "x-original-partition",
    "x-original-offset",
)
REPLAYED_FROM = "x-replayed-from"


@dataclass(frozen=True)
class DeadLetter:
    """A record of a dead-letter topic, with what the consumer runner wrote about its failure."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    settled: bool = False

    @classmethod
    def of(cls, message: Message, *, settled: bool = False) -> "DeadLetter":
        return cls(
            message.topic, message.partition, message.offset, message.key, message.value, message.headers, settled
        )

    def header(self, name: str) -> str:
        """A header's value as text ("" when absent)."""
        return next((value.decode(errors="replace") for key, value in self.headers if key == name), "")

    @property
    def original_topic(self) -> str:
        return dead_letter_topics()[self.topic]

    @property
    def event_id(self) -> str:
        return self.header("ce_id")

    def replayed(self) -> OutgoingMessage:
        """The letter as it goes back to its topic: the event's key, value and headers, without the error's,
        with where it came from."""
        headers = tuple(
            (key, value) for key, value in self.headers if key not in ERROR_HEADERS and key != REPLAYED_FROM
        )
        origin = f"{self.topic}/{self.partition}/{self.offset}".encode()
        return OutgoingMessage(self.original_topic, self.key, self.value, (*headers, (REPLAYED_FROM, origin)))

    def describe(self) -> str:
        """One line for a person: where the letter is, which group gave up on which event, and why."""
        state = "réglée" if self.settled else "en attente"
        event = f"{self.header('ce_type') or 'illisible'} {self.event_id or '-'}"
        return (
            f"{self.topic}/{self.partition}@{self.offset} [{state}] groupe {self.header('x-group') or '?'}, "
            f"événement {event}, clé {self.key}, {self.header('x-attempts') or '?'} tentative(s), "
            f"offset d’origine {self.header('x-original-offset') or '?'} : "
            f"{self.header('x-error-type')} {self.header('x-error-message')}".rstrip()
        )


def selected(topics: Sequence[str] | None) -> list[str]:
    """The dead-letter topics named (by their own name or their topic's), every declared one by default;
    ValueError names an unknown one."""
    every = dead_letter_topics()
    if not topics:
        return sorted(every)
    chosen = []
    for name in topics:
        if name in every:
            chosen.append(name)
        elif f"{name}.dlq" in every:
            chosen.append(f"{name}.dlq")
        else:
            raise ValueError(name)
    return sorted(set(chosen))


async def pending(bus: EventBus, topics: Sequence[str] | None = None) -> dict[str, int]:
    """Letters not settled yet, per dead-letter topic."""
    lag = await bus.lag(SETTLED, selected(topics))
    counts = dict.fromkeys(selected(topics), 0)
    for (topic, _), n in lag.items():
        counts[topic] += n
    return counts


async def report_pending(bus: EventBus, topics: Sequence[str]) -> None:
    """Set `civique_dead_letters_pending` for the dead-letter topics of `topics` (the topics a process consumes)."""
    wanted = sorted(dead_letter_topics(topics))
    if wanted:
        for topic, n in (await pending(bus, wanted)).items():
            DEAD_LETTERS_PENDING.labels(topic).set(n)


async def read(bus: EventBus, topics: Sequence[str] | None = None, *, within_s: float = 60.0) -> list[DeadLetter]:
    """Every letter of the dead-letter topics up to their last offsets, in order per partition, settled or not."""
    chosen = selected(topics)
    lag, until = await bus.lag(SETTLED, chosen), await bus.last_offsets(chosen)
    letters: dict[tuple[str, int], list[Message]] = {}

    async def keep(messages: Sequence[Message]) -> None:
        for message in messages:
            letters.setdefault((message.topic, message.partition), []).append(message)

    await _through(bus, f"{PEEK}.{uuid.uuid4().hex[:12]}", chosen, until, keep, within_s=within_s)
    found: list[DeadLetter] = []
    for partition, messages in sorted(letters.items()):
        # the last `lag` records of a partition are the unsettled ones (offsets grow; the group committed below them)
        kept = [m for m in messages if m.offset <= until[partition]]
        unsettled = lag.get(partition, 0)
        found.extend(DeadLetter.of(m, settled=i < len(kept) - unsettled) for i, m in enumerate(kept))
    return found


async def settle(
    bus: EventBus, topics: Sequence[str] | None = None, *, replay: bool, within_s: float = 60.0
) -> list[DeadLetter]:
    """Settle every unsettled letter of the dead-letter topics: replayed to its topic first when `replay` (once
    per event: a relay that published an event twice may have had it dead-lettered twice); returns them."""
    chosen = selected(topics)
    lag, until = await bus.lag(SETTLED, chosen), await bus.last_offsets(chosen)
    settled: list[DeadLetter] = []
    replayed: set[tuple[str, str]] = set()

    async def settle_batch(messages: Sequence[Message]) -> None:
        batch = [DeadLetter.of(message) for message in messages]
        if replay:
            going = []
            for letter in batch:
                once = (letter.original_topic, letter.event_id or f"{letter.topic}/{letter.partition}/{letter.offset}")
                if once not in replayed:
                    replayed.add(once)
                    going.append(letter.replayed())
            await bus.publish(going)  # before the commit: a crash in between replays them again, never loses them
        settled.extend(batch)

    waiting = {partition: last for partition, last in until.items() if lag.get(partition, 0)}
    await _through(bus, SETTLED, chosen, waiting, settle_batch, within_s=within_s)
    return settled


async def _through(
    bus: EventBus,
    group: str,
    topics: Sequence[str],
    until: Offsets,
    handle: Callable[[Sequence[Message]], Awaitable[None]],
    *,
    within_s: float,
) -> None:
    """Hand `group`'s batches of `topics` to `handle` (the bus commits each) until every partition of `until`
    has been read up to its offset there; TimeoutError past `within_s`."""
    left = {partition: last for partition, last in until.items() if last >= 0}
    if not left:
        return
    done = asyncio.Event()

    async def handled(messages: Sequence[Message]) -> None:
        await handle(messages)
        last = messages[-1]
        if left.get((last.topic, last.partition), last.offset + 1) <= last.offset:
            del left[(last.topic, last.partition)]
        if not left:
            done.set()

    subscription = bus.subscribe_batches(group, topics, handled)
    await subscription.start()
    try:
        async with asyncio.timeout(within_s):
            await done.wait()
    finally:
        await subscription.stop()  # after the batch in hand and its commit


def dead_letters_command(
    action: str, topics: Sequence[str] | None, *, groups: Sequence[str] | None = None, every: bool = False
) -> int:
    """`list`, `replay` or `discard` on the platform's bus (CIVIQUE_* settings); prints in French, returns the
    exit code: 0, or 1 (USER_ERROR) for an unknown topic or a bus that does not answer."""
    from shared.runtime.backend import open_bus
    from shared.runtime.settings import Settings

    try:
        chosen = selected(topics)
    except ValueError as exc:
        print(f"Topic inconnu : {exc} (voir shared/runtime/topics.py).", file=sys.stderr)
        return 1
    bus = open_bus(Settings())

    async def act() -> int:
        try:
            if action == "list":
                return tell_list(await read(bus, chosen), groups=groups, every=every)
            letters = await settle(bus, chosen, replay=action == "replay")
            verb = "rejouée(s) vers leur topic" if action == "replay" else "écartée(s) sans être rejouée(s)"
            print(f"{len(letters)} lettre(s) morte(s) {verb}.")
            for letter in letters:
                print(f"  {letter.describe()}")
            return 0
        finally:
            await bus.close()

    started = time.monotonic()
    try:
        return asyncio.run(act())
    except TimeoutError:
        print(
            f"Le bus n’a pas tout livré en {time.monotonic() - started:.0f} s : rien d’autre n’a été fait.",
            file=sys.stderr,
        )
    except Exception as exc:
        print(f"Échec : {type(exc).__name__} : {exc}", file=sys.stderr)
    return 1


def tell_list(
    letters: Sequence[DeadLetter], *, groups: Sequence[str] | None, every: bool, out: TextIO = sys.stdout
) -> int:
    """Print the letters (the unsettled ones unless `every`), those of `groups` only when given."""
    shown = [
        letter
        for letter in letters
        if (every or not letter.settled) and (not groups or letter.header("x-group") in groups)
    ]
    for letter in shown:
        print(letter.describe(), file=out)
    waiting = sum(not letter.settled for letter in shown)
    print(f"{waiting} lettre(s) morte(s) en attente, {len(shown) - waiting} réglée(s) affichée(s).", file=out)
    return 0
