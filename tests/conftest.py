"""Fixtures: the two backends, and the real servers behind the production one.

Servers come from KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL when set; otherwise from testcontainers
when a Docker engine answers; otherwise `scripts/infra up` starts them as local processes (and
the session stops what it started). With CI=true a server that cannot be had fails the run.
"""

import asyncio
import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["embedded", "kafka+mongo"]
POLL_INTERVAL = 0.02
T = TypeVar("T")


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap_servers: str
    mongodb_url: str


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _from_containers(stack: ExitStack) -> Servers:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft())
    mongo = stack.enter_context(MongoDbContainer("mongo:7.0"))
    return Servers(kafka.get_bootstrap_server(), mongo.get_connection_url())


def _from_script(stack: ExitStack) -> Servers:
    status = subprocess.run([ROOT / "scripts/infra", "status"], capture_output=True, text=True, check=True).stdout
    already_running = status.count("running") == 2
    up = subprocess.run([ROOT / "scripts/infra", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        raise RuntimeError(f"scripts/infra up failed:\n{up.stderr[-3000:]}")
    if not already_running and not os.environ.get("CIVIQUE_KEEP_INFRA"):
        stack.callback(subprocess.run, [ROOT / "scripts/infra", "down"], check=False)
    values = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
    return Servers(values["KAFKA_BOOTSTRAP_SERVERS"], values["MONGODB_URL"])


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongo:
        yield Servers(kafka, mongo)
        return
    with ExitStack() as stack:
        try:
            found = _from_containers(stack) if _docker_answers() else _from_script(stack)
        except Exception as exc:  # never a skip: the production backend is half of every contract
            pytest.fail(f"no Kafka/MongoDB-protocol server for the tests: {exc}", pytrace=False)
        yield found


# for tests that are not about rate limits: no limit of any kind gets in the way of a burst or a poll
NO_RATE_LIMITS = {
    "rate_limit_per_minute": 10_000_000,
    "sensitive_rate_limit_per_minute": 10_000_000,
    "ip_rate_limit_per_minute": 10_000_000,
    "sensitive_ip_limit_per_minute": 10_000_000,
    "sign_up_limit_per_second": 10_000_000,
}


def make_settings(backend: str, tmp_path: Path, servers: Servers | None, **overrides: Any) -> Settings:
    """Settings isolated for one test: own data directory, own topics, groups and databases."""
    fields: dict[str, Any] = {
        "backend": backend,
        "data_dir": tmp_path / "data",
        "namespace": f"t{uuid.uuid4().hex[:10]}_",
        "consumer_session_timeout_ms": 3000,
        "consumer_retry_backoff_s": 0.01,
        "relay_interval_s": 0.02,
        "log_json": True,
    }
    if servers is not None:
        fields |= {"kafka_bootstrap_servers": servers.kafka_bootstrap_servers, "mongodb_url": servers.mongodb_url}
    made = Settings(**(fields | overrides))
    if made.backend == "kafka+mongo":
        _made_on_servers.append(made)
    return made


_made_on_servers: list[Settings] = []


@contextmanager
def lasting(settings: Settings) -> Iterator[Settings]:
    """`settings` of a platform that outlives one test (started once for a module): its topics and databases go
    when the block ends, not after the test that made them."""
    if any(made is settings for made in _made_on_servers):
        _made_on_servers.remove(settings)
    try:
        yield settings
    finally:
        if settings.backend == "kafka+mongo":  # in a thread: this one may run an event loop (Playwright's does)
            with ThreadPoolExecutor(1) as thread:
                thread.submit(asyncio.run, _drop([settings])).result()


# every storage the services and the tests open (`open_storage(settings, name)`)
STORAGE_NAMES = ("gateway", "missions", "moderation", "volunteers", "matching", "notifications", "keys", "contract")
STORAGE_NAMES = (*STORAGE_NAMES, "demo", "faults")  # the tests' own services


@pytest.fixture(autouse=True)
def drop_what_the_test_created_on_the_servers() -> Iterator[None]:
    """After each test, its topics and databases go: a broker holds one open file per partition, and a
    whole run would otherwise exhaust the machine's limit (20,000 here)."""
    yield
    made, _made_on_servers[:] = list(_made_on_servers), []
    if made:
        asyncio.run(_drop(made))


async def _drop(made: list[Settings]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    from shared.runtime.backend import database_name

    prefixes = {s.namespace for s in made}
    for bootstrap in {s.kafka_bootstrap_servers for s in made}:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            topics = [t for t in await admin.list_topics() if any(t.startswith(p) for p in prefixes)]
            if topics:
                await admin.delete_topics(topics)
        except Exception as exc:  # a test that stopped the broker: its topics stay, nothing else is at stake
            print(f"could not delete the test's topics: {exc!r}")
        finally:
            await admin.close()
    for url in {s.mongodb_url for s in made}:
        client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
        try:  # by name: listing the databases of FerretDB on SQLite opens every one of them
            for settings, storage in itertools.product(made, STORAGE_NAMES):
                await client.drop_database(database_name(settings, storage))
        except Exception as exc:
            print(f"could not drop the test's databases: {exc!r}")
        finally:
            await client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"CIVIQUE_{name.upper()}"] = str(value)
    return env


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Run the test once per backend."""
    servers = request.getfixturevalue("servers") if request.param == "kafka+mongo" else None
    return make_settings(request.param, tmp_path, servers)


def wait_until(check: Callable[[], T], *, within: float, what: str, every: float = 0.1) -> T:
    """`check()`'s first truthy answer, asked every `every` seconds; fail with `what` after `within` seconds (the
    synchronous twin of `eventually`, for threads that run no event loop)."""
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)
    return found


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail with `what` after `within` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


async def until_ready(url: str, *, within: float) -> None:
    """Poll a process's /readyz until it answers 200 (a process just started: it may not listen yet)."""
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, within=within, what=f"{url} ready")


def service_headers(app: Any, actor: Any = None) -> dict[str, str]:
    """What the gateway sends a service of `app` on behalf of `actor` (anonymous when None)."""
    from shared.runtime.actors import actor_headers

    token = app.state.runtime.settings.internal_token
    return actor_headers(actor, token) if actor is not None else {"x-internal-token": token}


@pytest.fixture(params=[*BACKENDS, "memory"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A service's storage on each backend, and in memory (the fakes the handlers' unit tests use)."""
    from shared.runtime.backend import Storage, open_storage
    from shared.runtime.memory import InMemoryDocumentStore, InMemoryEventStore

    if request.param == "memory":
        opened = Storage.of(InMemoryEventStore(), InMemoryDocumentStore())
    else:
        servers = request.getfixturevalue("servers") if request.param == "kafka+mongo" else None
        opened = open_storage(make_settings(request.param, tmp_path, servers), "contract")
    yield opened
    await opened.close()


def in_memory_context(name: str, **settings: Any) -> Any:
    """A service's context on the in-memory stores, for unit tests of its handlers: no file, no server,
    no bus; the runtime stand-in holds only the platform's key store."""
    from types import SimpleNamespace

    from shared.runtime.app import ServiceContext
    from shared.runtime.backend import Storage
    from shared.runtime.memory import InMemoryDocumentStore, InMemoryEventStore

    keys = Storage.of(InMemoryEventStore(), InMemoryDocumentStore())
    storage = Storage.of(InMemoryEventStore(), InMemoryDocumentStore())
    return ServiceContext(name, Settings(**settings), storage, bus=None, runtime=SimpleNamespace(keys=keys))  # type: ignore[arg-type]
