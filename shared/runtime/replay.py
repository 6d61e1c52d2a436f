"""Rebuilding read models from the events on the bus while the services keep serving (ADR 0011).

`python -m services.<name> replay [--group G]…` replays every consumer group of the service that declares read
models (`Subscriber.read_models`), or those named; `replay_services` does the same for several services at once.
One pass over the topics the groups consume, each event parsed once for every group projecting it:
1. rebuild: the history up to the last offsets at the start goes through the groups' projections into shadow
   collections (`<name>__rebuild`), held whole in memory (a projection's read never leaves the process) and
   written in bulk; the live groups and the HTTP reads go on meanwhile, on the live collections;
2. pause: the live groups are held (`pause_group`) until their positions stand still;
3. catch-up: each shadow takes in what its group handled meanwhile, up to the group's position and no further
   (what comes after is the live group's to handle, reactions included);
4. swap: each shadow replaces its live collection, keeping the live one's indexes (`replace_collections`), and
   the groups resume from their positions, on the rebuilt read models.
A failure at any step drops the shadows and resumes the groups: the live read models stay as they were."""

import asyncio
import contextlib
import gc
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn, TextIO

import structlog
from pydantic import ValidationError

from shared.events import Envelope, Event, UnknownEventType, catalog
from shared.runtime.app import Runtime, Service, ServiceContext
from shared.runtime.backend import open_storage
from shared.runtime.consumers import CONTROL, POSITIONS, Subscriber, pause_group, resume_group
from shared.runtime.logging import configure_logging
from shared.runtime.ports import (
    DocumentStore,
    DuplicateKeyError,
    EventBus,
    Filter,
    HistoryLost,
    Message,
    Offsets,
    Projection,
    Sort,
    Write,
    write_one_by_one,
)
from shared.runtime.settings import Settings

log = structlog.get_logger("civique.replay")

SHADOW_SUFFIX = "__rebuild"
FLUSH_EVERY = 20_000  # changed documents written per bulk write
CONTROL_READ_S = 1.0  # a paused member notices within this (it reads the control record once a second)
STILL_FOR_S = 1.5  # positions unchanged this long after that: the paused groups finished their last batch
STOP_WITHIN_S = 120.0  # a paused group still moving after this fails the replay
REMEMBERED_IDS = 500  # per partition, as the consumers (a relay that restarts republishes its last batch)
LOCK_REFRESH_S, LOCK_STALE_S = 10.0, 60.0  # one replay of a group at a time
Partition = tuple[str, int]
Phase = Literal["rebuild", "pause", "catch_up", "swap", "done"]


class ReplayFailed(Exception):
    """The replay stopped before the swap: the live read models are as they were, the groups resumed."""


class NotReplayable(ReplayFailed):
    """What was asked cannot be replayed (a group without read models, a projection doing more than project)."""


def lock_of(group: str) -> str:
    """The record of `consumer_control` that says a replay of the group is under way."""
    return f"replay:{group}"


def shadow_of(collection: str) -> str:
    """Where a read model is rebuilt before it replaces the live one."""
    return f"{collection}{SHADOW_SUFFIX}"


class ShadowDocuments:
    """The read models being rebuilt, as the projections see them: every document in memory, so a read that
    misses means there is no such document (the shadows started empty and only this replay writes them);
    what changed goes to the shadow collections in bulk (`flush`), one write at a time, in the background.

    Documents are copied one level deep on the way in and out: a projection that changes a nested value
    puts the document it changed, as on every store.
    """

    def __init__(self, store: DocumentStore, collections: Iterable[str]) -> None:
        self.store = store
        self.docs: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in collections}
        self._changed: dict[str, dict[str, None]] = {c: {} for c in self.docs}  # since the last flush
        self._stored: dict[str, set[str]] = {c: set() for c in self.docs}  # ids the shadow collection holds
        self.changes = 0
        self._writing: asyncio.Future[None] | None = None

    def _collection(self, collection: str) -> dict[str, dict[str, Any]]:
        docs = self.docs.get(collection)
        if docs is None:
            raise NotReplayable(f"une projection utilise {collection}, qui n’est pas un modèle de lecture reconstruit")
        return docs

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        docs = self.docs.get(collection)  # inlined `_collection`: the hot path of every projection
        found = (docs if docs is not None else self._collection(collection)).get(doc_id)
        return None if found is None else dict(found)

    async def put(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        docs = self.docs.get(collection)
        (docs if docs is not None else self._collection(collection))[doc_id] = dict(doc)
        self._changed[collection][doc_id] = None
        self.changes += 1

    async def insert(self, collection: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        if doc_id in self._collection(collection):
            raise DuplicateKeyError(f"{collection}/{doc_id}")
        await self.put(collection, doc_id, doc)

    async def delete(self, collection: str, doc_id: str) -> bool:
        existed = self._collection(collection).pop(doc_id, None) is not None
        self._changed[collection][doc_id] = None
        self.changes += 1
        return existed

    async def write(self, writes: Sequence[Write]) -> None:
        await write_one_by_one(self, writes)

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        self._collection(collection)
        await self.flush()
        await self.written()
        return await self.store.find(shadow_of(collection), where, sort=sort, limit=limit, skip=skip)

    async def count(self, collection: str, where: Filter | None = None) -> int:
        self._collection(collection)
        await self.flush()
        await self.written()
        return await self.store.count(shadow_of(collection), where)

    async def ensure_index(self, collection: str, fields: Sequence[str], *, unique: bool = False) -> None:
        """Nothing: the rebuilt collection takes the live one's indexes when it replaces it."""

    async def load(
        self, collection: str, documents: Mapping[str, Mapping[str, Any] | None], *, unseen: Container[str] = ()
    ) -> None:
        for doc_id, doc in documents.items():
            await (self.delete(collection, doc_id) if doc is None else self.put(collection, doc_id, doc))

    async def replace_collections(self, replacements: Mapping[str, str]) -> None:
        raise NotReplayable("une projection remplace des collections")

    async def drop_collection(self, collection: str) -> None:
        raise NotReplayable("une projection supprime une collection")

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        """The store belongs to the replay's caller."""

    async def flush(self) -> None:
        """Start writing what changed since the last flush (`DocumentStore.load`), once the previous write is done."""
        loads = []
        for collection, changed in self._changed.items():
            docs, stored = self.docs[collection], self._stored[collection]
            documents: dict[str, dict[str, Any] | None] = {}
            unseen = set()
            for doc_id in changed:
                doc = docs.get(doc_id)
                if doc is not None:
                    documents[doc_id] = doc
                    if doc_id not in stored:
                        stored.add(doc_id)
                        unseen.add(doc_id)
                elif doc_id in stored:
                    stored.discard(doc_id)
                    documents[doc_id] = None
            changed.clear()
            if documents:
                loads.append((shadow_of(collection), documents, unseen))
        self.changes = 0
        await self.written()  # two writes at once could land in either order
        if loads:
            self._writing = asyncio.ensure_future(self._load(loads))

    async def _load(self, loads: list[tuple[str, dict[str, dict[str, Any] | None], set[str]]]) -> None:
        for shadow, documents, unseen in loads:
            await self.store.load(shadow, documents, unseen=unseen)

    async def written(self) -> None:
        """Wait for the write under way, if any (its error is raised here)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def abandon(self) -> None:
        """Stop the write under way, if any, and forget its outcome."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.cancel()
            with contextlib.suppress(BaseException):
                await writing


@dataclass
class GroupReplay:
    """One group being replayed: where its projections write, how far they went in each partition."""

    subscriber: Subscriber
    shadow: ShadowDocuments
    partitions: list[Partition]
    applied: dict[Partition, int] = field(default_factory=dict)  # offsets its shadows took in, per partition
    handled: int = 0

    @property
    def group(self) -> str:
        return self.subscriber.group


@dataclass
class ServiceReplay:
    """One service's share of a replay: its document store, its groups replayed, the shadows they write."""

    service: str
    documents: DocumentStore
    subscribers: Sequence[Subscriber]
    collections: list[str] = field(init=False)
    shadow: ShadowDocuments = field(init=False)

    def __post_init__(self) -> None:
        collections = [c for s in self.subscribers for c in s.read_models]
        if len(set(collections)) != len(collections):
            raise NotReplayable(f"deux groupes de {self.service} déclarent le même modèle de lecture : {collections}")
        self.collections = collections
        self.shadow = ShadowDocuments(self.documents, collections)


@dataclass
class Progress:
    """Where a replay is: its phase, records read of the phase out of its total, since when."""

    services: str
    phase: Phase
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Records read a second in this phase."""
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass
class ReplayReport:
    """What a replay did."""

    services: list[str]
    groups: list[str]
    collections: list[str]  # `service.collection`
    events: int = 0  # records read from the bus
    projected: dict[str, int] = field(default_factory=dict)  # events each group's projections handled
    unreadable: int = 0  # envelopes or payloads this catalog cannot read (the live groups dead-lettered them)
    duplicates: int = 0  # events republished under a new offset
    seconds: float = 0.0
    rebuild_s: float = 0.0  # the first pass, while the live groups ran
    paused_s: float = 0.0  # how long the live groups were held

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], Awaitable[None]]
Positions = dict[str, dict[Partition, tuple[int, str]]]  # group → partition → (offset, written at)
Targets = dict[str, dict[Partition, int]]  # group → partition → the offset its shadows catch up to


class Replay:
    """The replay of some groups of one service or more, in one pass over the bus: each event is parsed once
    for every group projecting it, whatever its service (see the module)."""

    def __init__(
        self,
        parts: Sequence[ServiceReplay],
        bus: EventBus,
        partitions: int,
        *,
        on_progress: ProgressCallback | None = None,
        flush_every: int = FLUSH_EVERY,
    ) -> None:
        self.parts, self.bus = [p for p in parts if p.subscribers], bus
        self.on_progress, self.flush_every = on_progress, flush_every
        self.groups: dict[str, list[GroupReplay]] = {
            part.service: [
                GroupReplay(s, part.shadow, [(t, p) for t in s.topics for p in range(partitions)])
                for s in part.subscribers
            ]
            for part in self.parts
        }
        every_group = [g for groups in self.groups.values() for g in groups]
        self.topics = sorted({t for g in every_group for t in g.subscriber.topics})
        # event type → the groups projecting it, and how
        self.routes: dict[str, list[tuple[GroupReplay, Projection]]] = {}
        for group in every_group:
            for cls, projection in group.subscriber.projections.items():
                self.routes.setdefault(cls.event_type(), []).append((group, projection))
        self.recent: dict[Partition, dict[bytes, int]] = {}  # per partition: event id → offset, the last ones
        names = ", ".join(p.service for p in self.parts)
        self.report = ReplayReport(
            [p.service for p in self.parts],
            [g.group for g in every_group],
            [f"{p.service}.{c}" for p in self.parts for c in p.collections],
        )
        self.progress = Progress(names, "rebuild")
        self.by = f"replay {uuid.uuid4().hex[:8]} on {socket.gethostname()}, pid {os.getpid()}"
        self.paused_at: float | None = None  # when the live groups were paused
        self.positions_at_pause: Positions = {}

    @property
    def every_group(self) -> list[GroupReplay]:
        return [g for groups in self.groups.values() for g in groups]

    async def run(self) -> ReplayReport:
        """Rebuild, pause, catch up, swap; on any failure the shadows go and the live models stay."""
        collecting = gc.isenabled()
        # millions of long-lived documents without cycles: the cyclic collector would rescan them again and again
        gc.disable()
        try:
            return await self._run()
        finally:
            if collecting:
                gc.enable()

    async def _run(self) -> ReplayReport:
        started = time.monotonic()
        log.info("replay_started", services=self.report.services, groups=self.report.groups)
        locked: list[tuple[ServiceReplay, str]] = []
        try:
            for part in self.parts:
                for group in self.groups[part.service]:
                    await self._lock(part, group.group)
                    locked.append((part, group.group))
            await self._rebuild_and_swap(started)
        finally:
            for part, group_name in locked:
                with contextlib.suppress(Exception):
                    await part.documents.delete(CONTROL, lock_of(group_name))
        self.report.seconds = time.monotonic() - started
        self.report.projected = {g.group: g.handled for g in self.every_group}
        self.progress = Progress(self.progress.services, "done", self.report.events, self.report.events, started)
        await self._tell()
        log.info(
            "replay_done",
            services=self.report.services,
            events=self.report.events,
            seconds=round(self.report.seconds, 1),
            paused_s=round(self.report.paused_s, 1),
        )
        return self.report

    async def _rebuild_and_swap(self, started: float) -> None:
        try:
            try:
                for part in self.parts:
                    await self._drop_shadows(part)
                until = await self.bus.last_offsets(self.topics)
                await self._read(until, None, None)  # pauses the groups as it is about to end
                for group in self.every_group:
                    group.applied = {tp: until.get(tp, -1) for tp in group.partitions}
                self.report.rebuild_s = time.monotonic() - started
                await self._catch_up_and_swap()
            finally:
                if self.paused_at is not None:
                    for part in self.parts:
                        for group in self.groups[part.service]:
                            await resume_group(part.documents, group.group)
                    self.report.paused_s = time.monotonic() - self.paused_at
        except BaseException as exc:
            for part in self.parts:
                await part.shadow.abandon()
                with contextlib.suppress(Exception):
                    await self._drop_shadows(part)
            log.error("replay_failed", services=self.report.services, error=f"{type(exc).__name__}: {exc}")
            raise

    async def _pause(self) -> None:
        """Hold the live groups (once): from the last seconds of the first pass, so that waiting for them to stop
        overlaps its end."""
        if self.paused_at is not None:
            return
        self.paused_at = time.monotonic()
        for part in self.parts:
            for group in self.groups[part.service]:
                await pause_group(part.documents, group.group, self.by)
        # positions only move on (each write stamps its time): the same ones read later mean none moved since
        self.positions_at_pause = await self._positions()
        log.info("replay_paused", groups=self.report.groups)

    async def _lock(self, part: ServiceReplay, group: str) -> None:
        """One replay of a group at a time: a second one would write the same shadows."""
        lock = {"by": self.by, "at": datetime.now(UTC).isoformat()}
        try:
            await part.documents.insert(CONTROL, lock_of(group), lock)
        except DuplicateKeyError:
            held = await part.documents.get(CONTROL, lock_of(group)) or lock
            age = datetime.now(UTC) - datetime.fromisoformat(held["at"])
            if held["by"] != self.by and age.total_seconds() < LOCK_STALE_S:
                raise ReplayFailed(f"un rejeu de {group} est déjà en cours ({held['by']})") from None
            await part.documents.put(CONTROL, lock_of(group), lock)  # left by a replay that died

    async def _refresh_locks(self) -> None:
        lock = {"by": self.by, "at": datetime.now(UTC).isoformat()}
        for part in self.parts:
            for group in self.groups[part.service]:
                await part.documents.put(CONTROL, lock_of(group.group), lock)

    async def _catch_up_and_swap(self) -> None:
        await self._pause()
        assert self.paused_at is not None
        await self._tell_phase("pause")
        positions = await self._still_positions(self.paused_at)
        await self._tell_phase("catch_up")
        while True:  # a batch that finished late moved a position: take it in too
            await self._catch_up(positions)
            moved = await self._positions()
            if moved == positions:
                break
            positions = moved
        await self._tell_phase("swap")
        for part in self.parts:
            await part.shadow.flush()
        for part in self.parts:
            await part.shadow.written()
        for part in self.parts:
            await part.documents.replace_collections({c: shadow_of(c) for c in part.collections})
            log.info("replay_swapped", service=part.service, collections=part.collections)

    async def _positions(self) -> Positions:
        """Each group's positions: per partition, the last offset it finished and when it wrote that."""
        found: Positions = {}
        for part in self.parts:
            for group in self.groups[part.service]:
                docs = await part.documents.find(POSITIONS, {"group": group.group})
                found[group.group] = {(d["topic"], d["partition"]): (d["offset"], d.get("at", "")) for d in docs}
        return found

    async def _still_positions(self, paused_at: float) -> Positions:
        """The groups' positions once every member has seen the pause and none has written one for a while."""
        last, still_since = self.positions_at_pause, paused_at
        while True:
            now = await self._positions()
            if now != last:
                last, still_since = now, time.monotonic()
            if time.monotonic() - max(still_since, paused_at + CONTROL_READ_S) >= STILL_FOR_S:
                return last
            if time.monotonic() - paused_at > STOP_WITHIN_S:
                raise ReplayFailed(f"les groupes {self.report.groups} traitent encore des événements malgré la pause")
            await asyncio.sleep(0.1)

    async def _catch_up(self, positions: Positions) -> None:
        """Each group's shadows take in what the group handled beyond them, up to its position."""
        targets = {
            g.group: {tp: positions[g.group].get(tp, (-1, ""))[0] for tp in g.partitions} for g in self.every_group
        }
        after: dict[Partition, int] = {}
        until: dict[Partition, int] = {}
        for group in self.every_group:
            for tp in group.partitions:
                if targets[group.group][tp] > group.applied[tp]:
                    after[tp] = min(after.get(tp, group.applied[tp]), group.applied[tp])
                    until[tp] = max(until.get(tp, -1), targets[group.group][tp])
        if until:
            await self._read(until, after, targets)
        for group in self.every_group:
            for tp in group.partitions:
                group.applied[tp] = max(group.applied[tp], targets[group.group][tp])

    async def _read(self, until: Offsets, after: Offsets | None, targets: Targets | None) -> None:
        """Read the history between the bounds through the projections; with `targets` (catching up), an event
        goes to a group only past what its shadows took in and up to its target."""
        try:
            self.progress.total = await self.bus.history_size(self.topics, until, after)
        except HistoryLost as lost:
            raise ReplayFailed(
                f"le bus n’a plus tout l’historique, les modèles reconstruits seraient faux : {lost}"
            ) from lost
        self.progress.done, self.progress.started = 0, time.monotonic()
        await self._tell()
        told = locked = time.monotonic()
        lately = (told, 0)  # the pace of the last second or so, for when to pause: the average lags behind a change
        async with contextlib.aclosing(self.bus.history(self.topics, until, after)) as history:
            async for messages in history:
                await self._apply(messages, targets)
                self.progress.done += len(messages)
                self.report.events += len(messages)
                for part in self.parts:
                    if part.shadow.changes >= self.flush_every:
                        await part.shadow.flush()
                now = time.monotonic()
                if now - told >= 0.2:
                    await self._tell()
                    told = now
                if targets is None and now > lately[0]:
                    rate = (self.progress.done - lately[1]) / (now - lately[0])
                    if rate > 0 and (self.progress.total - self.progress.done) / rate < CONTROL_READ_S + STILL_FOR_S:
                        await self._pause()
                    if now - lately[0] >= 1.0:
                        lately = (now, self.progress.done)
                if now - locked >= LOCK_REFRESH_S:
                    await self._refresh_locks()
                    locked = now
        await self._tell()

    async def _apply(self, messages: list[Message], targets: Targets | None) -> None:
        """The hot path: skip what no group projects before parsing anything, parse each event once for all
        the groups projecting it."""
        routes, recent, eligible = self.routes, self.recent, self._eligible
        for message in messages:
            value = message.value
            event_type, event_id = sniffed(value)
            chosen = None
            if event_type is not None:
                chosen = routes.get(event_type)
                if targets is not None:
                    chosen = eligible(chosen, message, targets)
                if not chosen:
                    continue
            decoded = self._decode(message)
            if decoded is None:
                continue
            envelope, event = decoded
            if chosen is None:  # not sniffed: routed by the parsed type
                chosen = eligible(routes.get(envelope.type), message, targets)
                if not chosen:
                    continue
                event_id = str(envelope.event_id).encode()
            # a relay that restarts republishes its last batch under new offsets: seen ids are skipped
            window = recent.get((message.topic, message.partition))
            if window is None:
                window = recent[(message.topic, message.partition)] = {}
            if window.setdefault(event_id, message.offset) != message.offset:
                self.report.duplicates += 1
                continue
            if len(window) > REMEMBERED_IDS:
                del window[next(iter(window))]
            for group, projection in chosen:
                try:
                    await projection(group.shadow, event, envelope)
                except NotReplayable:
                    raise
                except Exception as exc:
                    raise ReplayFailed(
                        f"{group.group} : {envelope.type} {envelope.event_id} en {message.topic}/"
                        f"{message.partition}@{message.offset} : {type(exc).__name__}: {exc}"
                    ) from exc
                group.handled += 1

    @staticmethod
    def _eligible(
        routes: list[tuple[GroupReplay, Projection]] | None,
        message: Message,
        targets: Targets | None,
    ) -> list[tuple[GroupReplay, Projection]] | None:
        """The routes of the message's event; while catching up, only to the groups whose shadows have not taken
        it in yet and whose position is past it."""
        if routes is None or targets is None:
            return routes
        tp, offset = (message.topic, message.partition), message.offset
        return [(g, p) for g, p in routes if g.applied.get(tp, -1) < offset <= targets[g.group].get(tp, -1)]

    def _decode(self, message: Message) -> tuple[Envelope, Event] | None:
        try:
            envelope = Envelope.from_json(message.value)
            return envelope, catalog.decode(envelope)
        except (ValidationError, UnknownEventType) as exc:  # the live groups dead-lettered it
            self.report.unreadable += 1
            log.warning(
                "replay_unreadable",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error=type(exc).__name__,
            )
            return None

    async def _drop_shadows(self, part: ServiceReplay) -> None:
        for collection in part.collections:
            await part.documents.drop_collection(shadow_of(collection))

    async def _tell_phase(self, phase: Phase) -> None:
        self.progress = Progress(self.progress.services, phase)
        log.info("replay_phase", services=self.report.services, phase=phase)
        await self._tell()

    async def _tell(self) -> None:
        if self.on_progress is not None:
            await self.on_progress(self.progress)


ID_KEY, TYPE_KEY = b'{"event_id":"', b'","type":"'


def sniffed(value: bytes) -> tuple[str | None, bytes]:
    """The type and the id of an event without parsing its envelope, which starts with them (pydantic writes the
    fields in their declared order); (None, b"") for an envelope written otherwise (the caller parses it)."""
    if not value.startswith(ID_KEY) or value[49:59] != TYPE_KEY:  # a UUID's text is 36 characters
        return None, b""
    end = value.find(b'"', 59, 160)
    return (value[59:end].decode(), value[13:49]) if end > 0 else (None, b"")


class ProjectionsOnly(dict[type, Any]):
    """The components of a context built for a replay: none. The service's subscribers are built on it for their
    projections; a reaction beside them (a handler using a component) gets one that refuses to work."""

    def __missing__(self, kind: type) -> Any:
        return Refusing(kind)


class Refusing:
    """Stands for a service's component in a replay: its methods can be named (a handler built around one) but
    any call is a bug of the replay, which runs projections only."""

    def __init__(self, kind: type) -> None:
        self._kind = kind

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        def refuse(*_: Any, **__: Any) -> NoReturn:
            raise NotReplayable(f"{self._kind.__name__}.{name} : un rejeu n’exécute que des projections")

        return refuse


def replayable(subscribers: Sequence[Subscriber], groups: Collection[str] | None) -> list[Subscriber]:
    """The groups to replay among `subscribers`: those with read models, or those named (NotReplayable for a named
    group without read models)."""
    if groups is None:
        return [s for s in subscribers if s.read_models]
    named = [s for s in subscribers if s.group in groups]
    if idle := [s.group for s in named if not s.read_models]:
        choices = ", ".join(s.group for s in subscribers if s.read_models) or "aucun"
        raise NotReplayable(f"{', '.join(idle)} : pas de modèles de lecture (groupes rejouables : {choices})")
    return named


async def replay_services(
    services: Sequence[Service],
    settings: Settings,
    *,
    groups: Collection[str] | None = None,
    on_progress: ProgressCallback | None = None,
    flush_every: int = FLUSH_EVERY,
) -> ReplayReport:
    """Replay the read models of `services` (every group that declares some, or the groups named) in one pass over
    the bus, on the storage and bus the settings name, beside the running services. Their handlers are never
    built: projections only."""
    runtime = Runtime(settings, services)
    storages = {service.name: open_storage(settings, service.name) for service in services}
    try:
        parts = []
        for service in services:
            storage = storages[service.name]
            context = ServiceContext(service.name, settings, storage, runtime.bus, runtime, ProjectionsOnly())
            subscribers = service.subscribers(context)
            parts.append(ServiceReplay(service.name, storage.documents, replayable(subscribers, groups)))
        found = {s.group for part in parts for s in part.subscribers}
        if unknown := sorted(set(groups or ()) - found):
            raise NotReplayable(f"groupe inconnu de {', '.join(s.name for s in services)} : {', '.join(unknown)}")
        replay = Replay(parts, runtime.bus, settings.partitions, on_progress=on_progress, flush_every=flush_every)
        if not replay.parts:
            return replay.report
        return await replay.run()
    finally:
        for storage in storages.values():
            await storage.close()
        await runtime.bus.close()


# ---- the command line (French: an operator reads it) ----

PHASES = {
    "rebuild": "reconstruction",
    "pause": "pause des groupes",
    "catch_up": "rattrapage",
    "swap": "bascule",
    "done": "terminé",
}


def number(n: float) -> str:
    return f"{n:,.0f}".replace(",", "\u202f")


class Printer:
    """Prints a replay's progress about once a second, each phase as it starts and as it ends."""

    def __init__(self, out: TextIO, every_s: float = 1.0) -> None:
        self.out, self.every_s = out, every_s
        self._phase: Phase | None = None
        self._printed_at = 0.0
        self._ended = False

    async def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        ended = progress.total > 0 and progress.done >= progress.total
        if progress.phase == self._phase and not (ended and not self._ended) and now - self._printed_at < self.every_s:
            return
        if progress.phase != self._phase:
            self._phase, self._ended = progress.phase, False
        self._printed_at, self._ended = now, self._ended or ended
        line = f"{progress.services} — {PHASES[progress.phase]}"
        if progress.total:
            eta = progress.eta_s
            line += (
                f" : {number(progress.done)} / {number(progress.total)} événements"
                f" ({100 * progress.done / progress.total:.0f} %), {number(progress.rate)} év./s"
            )
            if eta is not None and not ended:
                line += f", fin dans ~{eta:.0f} s"
        print(line, file=self.out, flush=True)


def replay_command(
    services: Sequence[Service], *, groups: Collection[str] | None = None, out: TextIO = sys.stdout
) -> int:
    """`python -m services.<name> replay [--group G]…`: the exit code (0 done, 1 failed: live models unchanged)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, repeat_interval_s=settings.log_repeat_interval_s)
    names = ", ".join(s.name for s in services)
    try:
        report = asyncio.run(replay_services(services, settings, groups=groups, on_progress=Printer(out)))
    except Exception as failure:  # cleaned up already: shadows dropped, groups resumed
        why = str(failure) if isinstance(failure, ReplayFailed) else f"{type(failure).__name__}: {failure}"
        print(
            f"Échec du rejeu ({names}) : {why}. Les modèles de lecture en service sont inchangés et les groupes "
            "ont repris.",
            file=sys.stderr,
        )
        return 1
    if not report.groups:
        print(f"Rien à rejouer : aucun groupe de {names} ne déclare de modèles de lecture.", file=out)
        return 0
    print(
        f"Modèles de lecture reconstruits ({', '.join(report.collections)}) : {number(report.events)} événements "
        f"lus en {report.seconds:.1f} s ({number(report.events_per_s)} év./s), groupes en pause "
        f"{report.paused_s:.1f} s.",
        file=out,
    )
    return 0
