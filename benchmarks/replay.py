"""Replay benchmark: every read model of every service rebuilt from 1,000,000 events (ADR 0011).

python benchmarks/replay.py [--events 1000000] [--kafka-events 100000] [--profile SERVICE]
Writes a platform's history straight onto the bus topics (organisations registered and reviewed, referents and
policies, missions drafted to published, volunteers and their accounts, applications and their outcomes, the
places they take), then replays every replayable group of every service, each service in its own process, all
at once, and times it. Embedded first (the target: 30,000 events/s), then Kafka + FerretDB with fewer events
(not a target). Writes `replay_events` and `replay_events_per_s` into docs/benchmarks/drain.json (its other keys
belong to the drain benchmark) and the replay section of docs/benchmarks.md. `--profile SERVICE` runs one
service's replay under cProfile instead, embedded, and prints where its time goes.
"""

import argparse
import asyncio
import cProfile
import io
import itertools
import json
import multiprocessing
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from benchmarks.spike import machine  # noqa: E402
from services.__main__ import SERVICES as PLATFORM  # noqa: E402
from shared.events import (  # noqa: E402
    AccountOpened,
    ApplicationAccepted,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    Envelope,
    Event,
    MissionDrafted,
    MissionFilled,
    MissionModerated,
    MissionPlacesChanged,
    MissionPublished,
    MissionSubmitted,
    MissionValidated,
    ModerationPolicyChanged,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentAppointed,
    VolunteerProfileUpdated,
    VolunteerRegistered,
    catalog,
)
from shared.events.vocabulary import DOMAINS, MissionContent, Place, SafetyConditions, Sealed  # noqa: E402
from shared.geo import _load  # noqa: E402
from shared.runtime.app import Runtime  # noqa: E402
from shared.runtime.backend import open_bus  # noqa: E402
from shared.runtime.logging import configure_logging  # noqa: E402
from shared.runtime.ports import EventBus, OutgoingMessage  # noqa: E402
from shared.runtime.replay import ShadowDocuments, replay_services, sniffed  # noqa: E402
from shared.runtime.settings import Settings  # noqa: E402

DRAIN = ROOT / "docs" / "benchmarks" / "drain.json"
SERVICES = ("missions", "moderation", "volunteers", "matching", "notifications", "gateway")
# two processes for two cores, about even in CPU (matching's projections are the heaviest): groups by process
SPLIT = (
    "missions.read_models,missions.moderation,missions.capacity,moderation.queue,matching.read_models;"
    "volunteers.read_models,volunteers.missions,moderation.territory,notifications.mail"
)
START = datetime(2026, 1, 5, 8, tzinfo=UTC)


def places(rng: random.Random, count: int = 400) -> list[tuple[str, str, str, float, float]]:
    """Postal code, department, commune, latitude, longitude of `count` communes of France."""
    found = [
        (code, commune.department, commune.name, commune.latitude, commune.longitude)
        for code, area in _load().areas.items()
        for commune in area.communes[:1]
        if commune.latitude is not None
    ]
    return rng.sample(found, min(count, len(found)))


def sealed(rng: random.Random) -> Sealed:
    return Sealed(key_id=uuid.UUID(int=rng.getrandbits(128)).hex, ciphertext="x" * rng.randint(180, 260))


def platform_history(total: int, seed: int = 14) -> Iterator[Envelope]:
    """`total` events of a platform's life, in an order that respects what causes what: referents and policies,
    organisations then their review, missions (drafted, submitted, validated, published) among volunteers
    signing up, applications then their outcomes, each acceptance taking a place of its mission."""
    rng = random.Random(seed)
    where = places(rng)
    versions: dict[str, int] = defaultdict(int)
    clock = itertools.count()

    def wrap(event: Event) -> Envelope:
        stream = event.stream_id()
        versions[stream] += 1
        return Envelope(
            type=event.event_type(),
            schema_version=event.schema_version,
            topic=event.topic,
            stream_id=stream,
            stream_version=versions[stream],
            occurred_at=START + timedelta(seconds=next(clock)),
            data=event.model_dump(mode="json"),
        )

    def timeline() -> Iterator[Event]:
        for department in sorted({d for _, d, *_ in where}):
            yield ReferentAppointed(referent_id=f"r-{department}", departments=[department])
            yield ModerationPolicyChanged(department=department, policy=rng.choice(["pre", "post"]))
        organizations = []
        for n in range(max(2, total // 500)):
            code, department, commune, *_ = rng.choice(where)
            yield OrganizationRegistered(
                organization_id=f"o{n}",
                name=f"Association solidaire {n}",
                kind="association",
                postal_code=code,
                department=department,
                commune=commune,
                manager_ids=[f"manager-{n}"],
            )
            if rng.random() < 0.9:
                yield OrganizationApproved(organization_id=f"o{n}", department=department)
                organizations.append((f"o{n}", (code, department, commune, *_)))
            else:
                yield OrganizationRejected(organization_id=f"o{n}", department=department, reason="not_eligible")
        missions: list[tuple[str, str, str]] = []  # id, organisation, department
        free: dict[str, int] = {}
        mission_count, volunteer_count = total * 3 // 100, total // 5
        for n in range(max(mission_count, volunteer_count)):
            if n < mission_count:
                yield from mission_life(n, rng.choice(organizations), missions, free)
            if n < volunteer_count:
                yield from volunteer_life(n)
        for chunk in itertools.count():
            received = []
            for n in range(chunk * 1000, chunk * 1000 + 1000):
                mission_id, organization_id, _ = rng.choice(missions)
                volunteer_id = f"v{rng.randrange(volunteer_count)}"
                ids = {"mission_id": mission_id, "volunteer_id": volunteer_id, "organization_id": organization_id}
                received.append(ids | {"application_id": f"a{n}"})
                yield ApplicationReceived(**received[-1])
            for application in received:
                mission_id = application["mission_id"]
                roll = rng.random()
                if roll < 0.5 and free[mission_id] > 0:
                    yield ApplicationAccepted(**application)
                    free[mission_id] -= 1
                    if free[mission_id]:
                        yield MissionPlacesChanged(
                            mission_id=mission_id,
                            organization_id=application["organization_id"],
                            free_places=free[mission_id],
                        )
                    else:
                        yield MissionFilled(mission_id=mission_id, organization_id=application["organization_id"])
                elif roll < 0.8:
                    yield ApplicationRefused(**application, reason="requirements_not_fulfilled")
                else:
                    yield ApplicationWithdrawn(**application, reason="not_available")

    def mission_life(
        n: int, organization: tuple[str, tuple[Any, ...]], missions: list[tuple[str, str, str]], free: dict[str, int]
    ) -> Iterator[Event]:
        organization_id, (code, department, commune, latitude, longitude) = organization
        remote = rng.random() < 0.1
        start = date(2026, 2, 1) + timedelta(days=rng.randint(0, 60))
        content = MissionContent(
            title=f"Mission {n} : {rng.choice(['maraude', 'collecte', 'appels', 'courses', 'garde'])}",
            description="Aider les habitants du quartier pendant la crise : accueil, tri, distribution, appels.",
            domain=rng.choice(DOMAINS),
            remote=remote,
            department=department,
            place=None
            if remote
            else Place(
                postal_code=code, commune=commune, department=department, latitude=latitude, longitude=longitude
            ),
            places=rng.randint(1, 10),
            start_date=start,
            end_date=start + timedelta(days=rng.choice([1, 14, 90])),
            safety=None if remote else SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
        )
        mission_id = f"m{n}"
        ids = {"mission_id": mission_id, "organization_id": organization_id}
        yield MissionDrafted(**ids, content=content)
        yield MissionSubmitted(**ids, content=content, moderation="pre")
        yield MissionValidated(**ids, department=department)
        yield MissionModerated(**ids, decision="validated")
        yield MissionPublished(**ids, content=content, free_places=content.places)
        missions.append((mission_id, organization_id, department))
        free[mission_id] = content.places

    def volunteer_life(n: int) -> Iterator[Event]:
        code, department, *_ = rng.choice(where)
        volunteer_id = f"v{n}"
        yield VolunteerRegistered(
            volunteer_id=volunteer_id,
            personal=sealed(rng),
            postal_code=code,
            department=department,
            age_bracket=rng.choice(["18-24", "25-34", "35-49", "50-64", "16-17"]),
            domains=rng.sample(DOMAINS, rng.randint(1, 3)),
            availability=rng.sample(["weekdays", "evenings", "weekends"], rng.randint(1, 3)),
            mode=rng.choice(["on_site", "remote", "both"]),
            max_distance_km=rng.choice([5, 10, 20, 50]),
            onsite_restricted=False,
            visible_to_organizations=rng.random() < 0.9,
        )
        yield AccountOpened(account_id=volunteer_id, role="volunteer", email=sealed(rng))
        if rng.random() < 0.2:
            yield VolunteerProfileUpdated(volunteer_id=volunteer_id, domains=rng.sample(DOMAINS, 2))

    for event in itertools.islice(timeline(), total):
        yield wrap(event)


async def publish_history(bus: EventBus, total: int, *, chunk: int = 5000, seed: int = 14) -> dict[str, int]:
    """Publish `total` events onto the bus (the embedded bus inserts each chunk in one transaction); returns how
    many of each type."""
    kinds: dict[str, int] = defaultdict(int)
    batch: list[OutgoingMessage] = []
    for envelope in platform_history(total, seed):
        kinds[envelope.type] += 1
        batch.append(OutgoingMessage.of(envelope))
        if len(batch) == chunk:
            await bus.publish(batch)
            batch = []
    if batch:
        await bus.publish(batch)
    return dict(kinds)


def replay_in_process(groups: list[str], settings_fields: dict[str, Any]) -> dict[str, Any]:
    """The replay of some groups in one pass (in a process of its own); its report as plain data."""
    settings = Settings(**settings_fields)
    configure_logging(settings.log_level, settings.log_json)
    services = [s for s in PLATFORM if any(g.split(".")[0] == s.name for g in groups)]
    cpu = time.process_time()
    report = asyncio.run(replay_services(services, settings, groups=groups))
    return {
        "services": report.services,
        "groups": report.groups,
        "events": report.events,
        "projected": report.projected,
        "seconds": round(report.seconds, 2),
        "rebuild_s": round(report.rebuild_s, 2),
        "paused_s": round(report.paused_s, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "unreadable": report.unreadable,
    }


def replay_everything(settings: Settings, split: list[list[str]]) -> tuple[float, list[dict[str, Any]]]:
    """The replay of every service, its groups split among processes running at once (each parses the events its
    groups project, once for all of them); the wall time and their reports. Forked: a process starts in
    milliseconds with the modules already imported."""
    fields = settings.model_dump(mode="json")
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(split)) as pool:
        reports = pool.starmap(replay_in_process, [(names, fields) for names in split])
    return time.perf_counter() - started, reports


async def write_history(settings: Settings, total: int) -> tuple[float, dict[str, int]]:
    bus = open_bus(settings)
    started = time.perf_counter()
    try:
        kinds = await publish_history(bus, total)
    finally:
        await bus.close()
    return time.perf_counter() - started, kinds


async def start_services_once(settings: Settings) -> None:
    """Each service's start-up work, as a running platform did it: its live collections and their indexes, which
    the swap rebuilds on the replayed collections."""
    secrets = {"link_secret": "benchmark", "jwt_secret": "benchmark", "run_consumers": False}
    runtime = Runtime(settings.model_copy(update=secrets), PLATFORM)
    await runtime.open()
    await runtime.close()


def run_backend(settings: Settings, total: int, split: list[list[str]]) -> dict[str, Any]:
    asyncio.run(start_services_once(settings))
    written_s, kinds = asyncio.run(write_history(settings, total))
    print(f"{settings.backend}: {total:,} events written in {written_s:.1f} s", flush=True)
    wall, reports = replay_everything(settings, split)
    for report in reports:
        print(json.dumps(report), flush=True)
    cpu = sum(r["cpu_s"] for r in reports)
    figures = {
        "events": total,
        "seconds": round(wall, 1),
        "events_per_s": round(total / wall),
        "cpu_s": round(cpu, 1),
        "cpu_us_per_event": round(cpu / total * 1e6, 1),
        "deliveries": sum(n for r in reports for n in r["projected"].values()),
        "processes": reports,
        "mix": kinds,
        "write_s": round(written_s, 1),
    }
    print(json.dumps({k: v for k, v in figures.items() if k not in ("processes", "mix")}), flush=True)
    return figures


def profile(names: list[str], total: int) -> None:
    """The replay of some services in one process under cProfile, embedded: where the time of an event goes."""
    configure_logging("warning", True)
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=Path(directory), log_level="warning")
        asyncio.run(write_history(settings, total))
        services = [s for s in PLATFORM if s.name in names]
        profiler = cProfile.Profile()
        profiler.enable()
        report = asyncio.run(replay_services(services, settings))
        profiler.disable()
        print(
            f"{', '.join(names)}: {report.events:,} records, {sum(report.projected.values()):,} projected, "
            f"{report.seconds:.1f} s (rebuild {report.rebuild_s:.1f} s)"
        )
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        print(text.getvalue())


def breakdown(total: int) -> dict[str, float]:
    """Where the CPU time of an event goes, every service replayed in one process (one pass, as one process of
    the benchmark does for its share): reading the history, parsing envelopes and events, projecting (documents
    kept in memory), writing the shadows; microseconds of CPU (every thread) per event of the history."""
    configure_logging("warning", True)

    async def read(settings: Settings, parse: bool) -> float:
        bus = open_bus(settings)
        topics = catalog.topics()
        cpu = time.process_time()
        async for messages in bus.history(topics, await bus.last_offsets(topics)):
            for message in messages:
                sniffed(message.value)
                if parse:
                    catalog.decode(Envelope.from_json(message.value))
        spent = time.process_time() - cpu
        await bus.close()
        return spent

    def replay(settings: Settings) -> float:
        cpu = time.process_time()
        asyncio.run(replay_services(PLATFORM, settings))
        return time.process_time() - cpu

    async def in_memory_only(self: ShadowDocuments) -> None:
        for changed in self._changed.values():
            changed.clear()
        self.changes = 0

    figures = {}
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=Path(directory), log_level="warning")
        asyncio.run(write_history(settings, total))
        figures["read"] = asyncio.run(read(settings, parse=False))
        figures["read_parse"] = asyncio.run(read(settings, parse=True))
        flush = ShadowDocuments.flush
        ShadowDocuments.flush = in_memory_only  # type: ignore[method-assign]
        try:
            figures["read_parse_project"] = replay(settings)
        finally:
            ShadowDocuments.flush = flush  # type: ignore[method-assign]
        figures["full"] = replay(settings)
    per_event = {name: round(seconds / total * 1e6, 1) for name, seconds in figures.items()}
    print(json.dumps(per_event))
    return per_event


def record(
    embedded: dict[str, Any], kafka: dict[str, Any] | None, costs: dict[str, float] | None, costs_events: int
) -> None:
    drain = json.loads(DRAIN.read_text()) if DRAIN.exists() else {}
    drain |= {"replay_events": embedded["events"], "replay_events_per_s": embedded["events_per_s"]}
    DRAIN.write_text(json.dumps(drain, indent=2) + "\n")
    rows = "\n".join(
        f"| {', '.join(r['groups'])} | {r['events']:,} | {sum(r['projected'].values()):,} | {r['rebuild_s']} | "
        f"{r['seconds']} | {r['paused_s']} | {r['cpu_s']} |"
        for r in embedded["processes"]
    )
    if kafka is None:
        kafka_line = "| Kafka + FerretDB | not run | | |"
    elif "failed" in kafka:
        kafka_line = f"| Kafka + FerretDB | failed: {kafka['failed']} | | |"
    else:
        kafka_line = (
            f"| Kafka + FerretDB, {kafka['events']:,} events (not a target) | {kafka['seconds']} s | "
            f"{kafka['events_per_s']:,} | {kafka['cpu_us_per_event']} µs |"
        )
    busiest = max(r["cpu_s"] for r in embedded["processes"]) + max(r["paused_s"] for r in embedded["processes"])
    cost_rows = ""
    if costs:
        parse = costs["read_parse"] - costs["read"]
        project = costs["read_parse_project"] - costs["read_parse"]
        write = costs["full"] - costs["read_parse_project"]
        cost_rows = (
            f"\nWhere the CPU of an event goes, every service replayed in one process ({costs_events:,} events, "
            "microseconds of CPU per event of the history, every thread):\n\n"
            "| step | µs | share |\n|---|---|---|\n"
            f"| reading the bus (SQLite rows, `Message`s, type sniffed) | {costs['read']} | "
            f"{costs['read'] / costs['full']:.0%} |\n"
            f"| `Envelope.from_json` + `catalog.decode` | {parse:.1f} | {parse / costs['full']:.0%} |\n"
            f"| projections and their in-memory reads and writes (about 3 groups an event) | {project:.1f} | "
            f"{project / costs['full']:.0%} |\n"
            f"| writing the shadows (pydantic JSON, `executemany`, SQLite) | {write:.1f} | "
            f"{write / costs['full']:.0%} |\n"
            f"| the whole replay | {costs['full']} | |\n"
        )
    write_section(
        "## Replay: every read model rebuilt from the events (benchmarks/replay.py)\n\n"
        f"Machine: {machine()}. A platform's history written straight onto the bus topics "
        f"({embedded['events']:,} events: referents and policies, organisations registered and reviewed, missions "
        "drafted, submitted, validated and published, volunteers and their accounts, applications and their "
        "outcomes, the places they take), each service's live collections and indexes created by its start-up, "
        "then every consumer group that declares read models replayed (shadow collections rebuilt in memory and "
        "written in bulk, groups paused, caught up, swapped with their indexes rebuilt, resumed) by "
        f"{len(embedded['processes'])} processes at once, each replaying its share of the groups in one pass over "
        "the bus (an event parsed once per process). Kafka 4.1.1 and FerretDB 1.24 (on PostgreSQL) share the 2 "
        "cores, and so do other engineers' jobs: wall times follow their load (runs of this code on the same day: "
        "8,500 to 20,600 events/s at load averages from 14 down to 1); the CPU per event (52 to 58 µs) is the "
        f"steadier figure. An event counts once however many groups project it "
        f"({embedded['deliveries']:,} deliveries to projections).\n\n"
        "| figure | wall time | events/s | CPU per event (all processes) |\n|---|---|---|---|\n"
        f"| embedded, {embedded['events']:,} events | {embedded['seconds']} s | {embedded['events_per_s']:,} | "
        f"{embedded['cpu_us_per_event']} µs |\n"
        f"{kafka_line}\n\n"
        f"Target: 30,000 events/s embedded. With the two cores to themselves, the busier process's CPU plus its "
        f"pause would take {busiest:.1f} s: {embedded['events'] / busiest:,.0f} events/s.\n\n"
        "| groups of the process | records read | deliveries | first pass s | total s | paused s | CPU s |\n"
        "|---|---|---|---|---|---|---|\n"
        f"{rows}\n"
        f"{cost_rows}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kafka-events", type=int, default=100_000, help="0: skip Kafka + FerretDB")
    parser.add_argument("--split", default=SPLIT, help="groups per process: comma-separated, processes by ';'")
    parser.add_argument("--no-record", action="store_true", help="print the figures only")
    parser.add_argument("--profile", help="profile the replay of these services (comma-separated) instead")
    parser.add_argument("--breakdown-events", type=int, default=200_000, help="where the CPU goes (0: skip)")
    options = parser.parse_args()
    if options.profile:
        profile(options.profile.split(","), options.events)
        return
    split = [names.split(",") for names in options.split.split(";")]
    with tempfile.TemporaryDirectory() as directory:
        embedded = run_backend(Settings(data_dir=Path(directory), log_level="warning"), options.events, split)
    kafka: dict[str, Any] | None = None
    if options.kafka_events:
        namespace = f"bench{uuid.uuid4().hex[:8]}_"
        settings = Settings(backend="kafka+mongo", namespace=namespace, log_level="warning")
        try:
            kafka = run_backend(settings, options.kafka_events, split)
        except Exception as exc:  # the servers are shared: say why there is no figure rather than lose the others
            kafka = {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        finally:
            asyncio.run(drop_namespace(settings))
    costs = breakdown(options.breakdown_events) if options.breakdown_events else None
    if not options.no_record:
        record(embedded, kafka, costs, options.breakdown_events)


async def drop_namespace(settings: Settings) -> None:
    """The benchmark's topics and databases go."""
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    from shared.runtime.backend import database_name

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(settings.namespace)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    try:
        for service in SERVICES:
            await client.drop_database(database_name(settings, service))
    finally:
        await client.close()


if __name__ == "__main__":
    main()
