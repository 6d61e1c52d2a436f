"""Drain benchmark (issue 14): how fast the workers carry out what a burst left on the bus, on both backends.

python benchmarks/drain.py [--backends embedded,kafka+mongo] [--workers 1,2] [--signups 20000] [--window 120]
                           [--applications 5000] [--full [BACKENDS]] [--skip-intake] [--skip-signups]
                           [--skip-applications] [--no-write] (--help lists every option)

1. Ceiling: argon2id hashes/s with the gateway's own `HASHER`, one thread per core, for a few seconds.
2. Sign-up drain, per backend and per worker count, each on a fresh platform (a new data directory embedded,
   a new namespace of topics and databases on Kafka + FerretDB): an HTTP process (`python -m services`,
   CIVIQUE_RUN_CONSUMERS=false: it serves and relays, consumes nothing) takes a burst of sign-ups through the
   public API (POST /api/v1/volunteers, every answer 202); then N worker processes (`CIVIQUE_WORKER=true
   python -m services`, as `start_workers` starts them) drain it. The rate is measured over a window that
   opens with the first account created (--window s), or over the whole drain with --full (the largest
   worker count of each backend), which also checks that accepted == volunteers registered == accounts.
3. Application drain, per backend and per worker count: volunteers registered and missions published
   through the API; the workers stopped, applications POSTed as the volunteers (access tokens minted by the
   gateway's own `Accounts.issue` with the platform's jwt secret: a login costs a hash), then the workers
   started; applications/s from the first to the last visible in all three of: the gateway's request record
   (carried out), the volunteers service's roster read model (what the manager's list of applications shows) and
   the manager's e-mail in the notifications delivery log.
4. The embedded default under a burst: `python -m services` as `make run` starts it (one worker process of
   its own), 2,000 sign-ups from 32 clients while the drain runs: accepted/s, p50/p99.
Writes docs/benchmarks/drain.json (its own keys; others are kept) and the Drain section of
docs/benchmarks.md. Servers for kafka+mongo come from `scripts/infra up`. The caller's CIVIQUE_* variables
are ignored: every setting of the platforms is set here. Children are stopped on exit, on Ctrl-C and on
SIGTERM; they also get SIGTERM if this process is killed.
"""

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from benchmarks.spike import free_port, machine  # noqa: E402
from services.gateway.handlers.accounts import HASHER, Accounts  # noqa: E402
from shared.events import SignUpRequested  # noqa: E402
from shared.runtime.app import ServiceContext  # noqa: E402
from shared.runtime.backend import Storage, database_name, open_bus, open_storage  # noqa: E402
from shared.runtime.mail import MAILBOX  # noqa: E402
from shared.runtime.memory import InMemoryDocumentStore, InMemoryEventStore  # noqa: E402
from shared.runtime.ports import EventBus  # noqa: E402
from shared.runtime.settings import Settings  # noqa: E402

PRODUCTION = "kafka+mongo"
NAMES = {"embedded": "embedded", PRODUCTION: "Kafka + FerretDB"}
KEYS = {"embedded": "embedded", PRODUCTION: "production"}  # drain.json's names of the backends
SERVICES = ("gateway", "missions", "moderation", "volunteers", "matching", "notifications")
PASSWORD = "Cerf-volant bleu 2026 !"
SECRETS = {
    "jwt_secret": "drain-benchmark-secret-long-enough-for-hs256",
    "internal_token": "drain-benchmark-internal",
    "link_secret": "drain-benchmark-links",
}
NO_RATE_LIMITS = {
    "rate_limit_per_minute": 10_000_000,
    "sensitive_rate_limit_per_minute": 10_000_000,
    "ip_rate_limit_per_minute": 10_000_000,
    "sensitive_ip_limit_per_minute": 10_000_000,
    "sign_up_limit_per_second": 10_000_000,
}
SIGNUP_RATIO_TARGET = 0.6
APPLICATION_TARGETS = {"embedded": 500.0, PRODUCTION: 150.0}
INTAKE_TARGET_PER_S, INTAKE_TARGET_P99_MS = 500.0, 100.0
DEPARTMENT, POSTAL_CODE = "56", "56000"
OUT = ROOT / "docs" / "benchmarks" / "drain.json"
LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None  # loaded before any fork
PR_SET_PDEATHSIG = 1


def row(*cells: object) -> None:
    """One line of the table printed as the run goes."""
    print(" | ".join(str(c) for c in cells), flush=True)


# ---- child processes ----


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the benchmark dies, even killed with -9 (Linux)."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Every process this benchmark started, to stop them whatever happens."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:  # appended: a restarted worker keeps the lines of the previous one
            process = subprocess.Popen(
                [sys.executable, "-m", "services"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # started from the main thread only: its death is ours
            )
        self.running.append(process)
        return process

    def stop(self, processes: Sequence[subprocess.Popen[bytes]], within_s: float = 60.0) -> None:
        """SIGTERM (each stops cleanly: consumers, relays), then SIGKILL what is left; then the workers a
        `python -m services` started itself, should they outlive it (they may: see the report)."""
        spawned = [pid for process in processes if process.poll() is None for pid in descendants(process.pid)]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + within_s
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process in self.running:
                self.running.remove(process)
        stop_pids(spawned, within_s=30.0)

    def stop_all(self) -> None:
        self.stop(list(self.running), within_s=30.0)


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, from /proc (Linux): the workers a serving process started."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def stop_pids(pids: Sequence[int], within_s: float) -> None:
    """SIGTERM these processes (ours, by id), then SIGKILL those still there after `within_s`."""
    alive = [pid for pid in pids if running(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within_s
    while (alive := [pid for pid in alive if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is reaped by init, not by us)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cpu_seconds(processes: Sequence[subprocess.Popen[bytes]]) -> float:
    """User + system CPU these processes used so far (Linux /proc): what a drain costs, whatever the load."""
    total = 0
    for process in processes:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


CHILDREN: "Children | None" = None
INTERRUPTED = False


def interrupt(signum: int, _: object) -> None:
    """SIGINT and SIGTERM: a KeyboardInterrupt wherever the benchmark is (asyncio's own SIGINT handler only
    cancels the main task, and a cancellation can be lost in a library's close); a second signal stops the
    children at once and leaves."""
    global INTERRUPTED
    if INTERRUPTED:
        if CHILDREN is not None:
            CHILDREN.stop(list(CHILDREN.running), within_s=5.0)
        os._exit(130)
    INTERRUPTED = True
    raise KeyboardInterrupt(f"signal {signum}")


# ---- one platform: its settings, processes and storages ----


@dataclass
class Platform:
    label: str
    settings: Settings
    env: dict[str, str]
    logs: Path
    children: Children
    http: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    storages: dict[str, Storage] = field(default_factory=dict)
    _bus: EventBus | None = None

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    async def start_http(self, *, consumers: bool = False) -> None:
        """`python -m services`: HTTP-only (serves and relays) unless `consumers` (then as `make run`)."""
        env = self.env if consumers else self.env | {"CIVIQUE_RUN_CONSUMERS": "false"}
        self.http = self.children.start(env, self.logs / "http.log")
        await wait_ready(self.url, self.http, self.logs / "http.log")

    def start_workers(self, count: int) -> None:
        """What `start_workers` starts: the same command, consuming instead of serving, no relay."""
        env = self.env | {"CIVIQUE_WORKER": "true", "CIVIQUE_RUN_RELAYS": "false"}
        self.workers = [self.children.start(env, self.logs / f"worker{n + 1}.log") for n in range(count)]

    def stop_workers(self) -> None:
        self.children.stop(self.workers)
        self.workers = []

    def check_alive(self) -> None:
        for name, process in [("http", self.http), *((f"worker{n + 1}", w) for n, w in enumerate(self.workers))]:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{self.label}: {name} exited ({process.returncode}); see {self.logs}")

    def storage(self, service: str) -> Storage:
        if service not in self.storages:
            self.storages[service] = open_storage(self.settings, service)
        return self.storages[service]

    async def count(self, service: str, collection: str, where: dict[str, Any] | None = None) -> int:
        return await self.storage(service).documents.count(collection, where)

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            self._bus = open_bus(self.settings)
        return self._bus

    async def lag(self, group: str, topics: Sequence[str]) -> int:
        """The group's committed lag through the bus port (what KEDA's scaler reads on Kafka)."""
        return sum((await self.bus.lag(group, topics)).values())

    async def records_on(self, topic: str) -> int:
        """Records the topic holds: the lag of a group that never consumed it."""
        return await self.lag(f"drain-count-{uuid.uuid4().hex[:8]}", [topic])

    async def groups(self) -> dict[str, set[str]]:
        """The consumer groups of this platform that committed something, with their topics."""
        if self.backend == "embedded":
            bus: Any = self.bus  # the embedded bus's own tables: the port lists no groups
            pairs = await bus.run(lambda c: c.execute("SELECT DISTINCT grp, topic FROM offsets").fetchall())
            found: dict[str, set[str]] = {}
            for group, topic in pairs:
                if not group.startswith("drain-count-"):
                    found.setdefault(group, set()).add(topic)
            return found
        from aiokafka.admin import AIOKafkaAdminClient

        prefix = self.settings.namespace
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
        await admin.start()
        try:
            found = {}
            for group, *_ in await admin.list_consumer_groups():
                if group.startswith(prefix) and not group.startswith(f"{prefix}drain-count-"):
                    offsets = await admin.list_consumer_group_offsets(group)
                    found[group[len(prefix) :]] = {tp.topic[len(prefix) :] for tp in offsets}
            return found
        finally:
            await admin.close()

    async def busy(self) -> dict[str, int]:
        """What is still to do: outboxes to publish, committed lag per group, e-mails due to the mailbox."""
        left: dict[str, int] = {}
        for service in SERVICES:
            backlog = await self.storage(service).store.backlog()
            if backlog:
                left[f"outbox:{service}"] = backlog
        for group, topics in (await self.groups()).items():
            if lag := await self.lag(group, sorted(topics)):
                left[group] = lag
        due = {"status": "queued", "next_attempt_at": {"$lte": datetime.now(UTC).isoformat()}}
        if mails := await self.count("notifications", "deliveries", due):
            left["mails_due"] = mails
        return left

    async def settle(self, within_s: float, what: str) -> None:
        """Until nothing is left to do twice in a row: a measure starts on a quiet platform."""
        deadline, quiet = time.monotonic() + within_s, 0
        left: dict[str, int] = {}
        while quiet < 2:
            self.check_alive()
            if time.monotonic() > deadline:  # reported, not fatal: the measure goes on, on a busier platform
                row("  DEFECT", self.label, f"still busy {within_s:.0f} s {what}:", left)
                return
            await asyncio.sleep(1.0)
            left = await self.busy()
            quiet = quiet + 1 if not left else 0

    async def close(self, keep_data: bool) -> None:
        self.children.stop([p for p in (*self.workers, self.http) if p is not None])
        self.workers, self.http = [], None
        for storage in self.storages.values():
            with contextlib.suppress(Exception):
                await storage.close()
        self.storages.clear()
        if self._bus is not None:
            with contextlib.suppress(Exception):
                await self._bus.close()
            self._bus = None
        if keep_data:
            return
        if self.backend == "embedded":
            shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        else:
            await drop_namespace(self.settings)


def new_platform(backend: str, label: str, scratch: Path, servers: dict[str, str], children: Children) -> Platform:
    """Fresh settings: a new data directory (embedded) or a new namespace of topics and databases."""
    fields: dict[str, Any] = {
        "backend": backend,
        "data_dir": scratch / label / "data",
        "namespace": f"drain{uuid.uuid4().hex[:8]}_" if backend == PRODUCTION else "",
        "port": free_port(),
        "log_level": ARGS.log_level,
        **SECRETS,
        **NO_RATE_LIMITS,
    }
    if backend == PRODUCTION:
        fields |= {
            "kafka_bootstrap_servers": servers["KAFKA_BOOTSTRAP_SERVERS"],
            "mongodb_url": servers["MONGODB_URL"],
        }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIQUE_")}
    env |= {f"CIVIQUE_{name.upper()}": str(value) for name, value in fields.items()}
    return Platform(label, Settings(**fields), env, scratch / label / "logs", children)


async def drop_namespace(settings: Settings) -> None:
    """A broker holds open files per partition, FerretDB a table per collection: what a run made goes (its
    consumer groups' offsets stay until the broker's retention: aiokafka's admin client cannot delete groups)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    prefix = settings.namespace
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=30_000)
    try:
        await admin.start()
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    except Exception as exc:
        print(f"could not delete the topics of {prefix}: {exc!r}")
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        for service in (*SERVICES, "keys"):
            await client.drop_database(database_name(settings, service))
    except Exception as exc:
        print(f"could not drop the databases of {prefix}: {exc!r}")
    finally:
        await client.close()


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, within_s: float = 120.0) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited at start:\n{tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {within_s:.0f} s:\n{tail(log)}")
            await asyncio.sleep(0.2)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def log_problems(logs: Path) -> dict[str, Any]:
    """Errors and warnings the platform's processes logged (JSON lines), and their first lines."""
    counts: Counter[str] = Counter()
    first: list[str] = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            level = "traceback" if line.startswith("Traceback") else None
            with contextlib.suppress(ValueError, AttributeError):
                level = str(json.loads(line).get("level", "")).lower() or level
            if level in ("warning", "error", "critical", "exception", "traceback"):
                counts[level] += 1
                if (len(first) < 8 and level != "warning") or len(first) < 3:
                    first.append(f"{log.name}: {line[:400]}")
    return {"counts": dict(counts), "first": first}


# ---- load ----


@dataclass
class Burst:
    answers: Counter[str]
    latencies_ms: list[float]
    seconds: float
    failures: list[str]

    @property
    def accepted(self) -> int:
        return self.answers["202"]

    @property
    def sent(self) -> int:
        return sum(self.answers.values())

    @property
    def per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


Request = tuple[str, bytes, str | None]  # path, JSON body, bearer token


class Connection:
    """One kept-alive HTTP/1.1 connection, POSTing JSON: a client whose cost stays out of the figures
    (httpx.AsyncClient, 32 at once, served ~370 requests/s of the bare endpoint on these 2 cores, against
    ~9,700/s for this one)."""

    def __init__(self, url: str) -> None:
        address = url.split("://", 1)[1].rstrip("/")
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, token: str | None) -> tuple[int, bytes]:
        reused = self.streams is not None
        try:
            return await self._post(path, body, token)
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
            unanswered = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if not (reused and unanswered):
                raise
        # uvicorn closes a connection idle for 5 s before reading what is sent on it: once more, on a new one
        return await self._post(path, body, token)

    async def _post(self, path: str, body: bytes, token: str | None) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        authorization = f"authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{authorization}\r\n"
        )
        try:
            writer.write(head.encode() + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            length, close = 0, False
            for line in answer.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" or (name == b"connection" and b"close" in value.lower()):
                    close = True  # not kept alive (or not framed by a length): read to the end, reconnect
            content = await (reader.readexactly(length) if not close else reader.read())
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return int(answer[9:12]), content

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def drive(
    url: str,
    requests: Sequence[Request],
    concurrency: int,
    *,
    warmup: Sequence[Request] = (),
    then: Callable[[], Awaitable[None]] | None = None,
) -> Burst:
    """POST every request, `concurrency` at a time over kept-alive connections; `warmup` first (one a
    connection, not counted), then `then` (awaited before the clock starts). Nothing is retried."""
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    failures: list[str] = []
    connections = [Connection(url) for _ in range(concurrency)]

    async def post(connection: Connection, request: Request) -> str:
        path, body, token = request
        try:
            status, content = await connection.post(path, body, token)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if len(failures) < 5:
                failures.append(f"{path}: {exc!r}")
            return type(exc).__name__
        if status != 202 and len(failures) < 5:
            failures.append(f"{path}: {status} {content[:300].decode(errors='replace')}")
        return str(status)

    async def one_client(connection: Connection, queue: Any, record: bool) -> None:
        for request in queue:
            started = time.perf_counter()
            status = await post(connection, request)
            if record:
                latencies.append((time.perf_counter() - started) * 1000)
                answers[status] += 1

    try:
        if warmup:
            await asyncio.gather(*(one_client(c, iter([w]), False) for c, w in zip(connections, warmup, strict=False)))
        if then is not None:
            await then()
        queue = iter(requests)
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, queue, True) for c in connections))
        seconds = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
    return Burst(answers, latencies, seconds, failures)


def sign_up(run: str, n: int) -> Request:
    volunteer = {
        "first_name": "Camille",
        "last_name": f"Drain{n}",
        "email": f"drain-{run}-{n}@exemple.fr",
        "phone": "06 12 34 56 78",
        "birth_date": "1990-05-04",
        "postal_code": POSTAL_CODE,
        "domains": ["keeping_in_touch"],
        "availability": ["evenings"],
    }
    return "/api/v1/volunteers", json.dumps({"password": PASSWORD, "volunteer": volunteer}).encode(), None


def check_burst(burst: Burst, what: str) -> None:
    """Every answer must be a 202: anything else is the platform's defect, shown with its first answers."""
    if burst.accepted != burst.sent:
        row("  DEFECT", what, f"{burst.sent - burst.accepted} of {burst.sent} answers not 202", dict(burst.answers))
        for failure in burst.failures:
            row("   ", failure)


class TokenMint:
    """Access tokens from the gateway's own code (`Accounts.issue`) and the platform's jwt secret, without a
    login (which costs a password hash); its refresh tokens go to an in-memory store and are dropped."""

    def __init__(self, settings: Settings) -> None:
        keys = Storage.of(InMemoryEventStore(), InMemoryDocumentStore())
        own = Storage.of(InMemoryEventStore(), InMemoryDocumentStore())
        runtime: Any = SimpleNamespace(keys=keys)  # all `Accounts` needs of a runtime: the key store
        bus: Any = None
        self.accounts = Accounts(ServiceContext("gateway", settings, own, bus, runtime))

    async def token(self, account_id: str, role: str) -> str:
        issued = await self.accounts.issue({"id": account_id, "role": role})
        return str(issued["access_token"])


async def until(check: Callable[[], Awaitable[bool]], within_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {within_s:.0f} s")
        await asyncio.sleep(every_s)


# ---- 1. the ceiling ----


def hash_ceiling(seconds: float, threads: int) -> dict[str, float]:
    """argon2id hashes/s with `threads` threads hashing at once (argon2-cffi releases the GIL)."""
    single = time.perf_counter()
    for _ in range(5):
        HASHER.hash(PASSWORD)
    single_ms = (time.perf_counter() - single) / 5 * 1000
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def spin(n: int) -> None:
        while time.perf_counter() < stop:
            HASHER.hash(PASSWORD)
            done[n] += 1

    started, cpu = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=spin, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "per_s": round(sum(done) / elapsed, 1),
        "threads": threads,
        "hash_ms": round(single_ms, 1),
        "cpu_ms_per_hash": round(cpu * 1000 / max(1, sum(done)), 1),
    }


# ---- 2. the sign-up drain ----


async def signup_drain(platform: Platform, workers: int, full: bool) -> dict[str, Any]:
    """A burst through the HTTP process, then `workers` worker processes; the rate over the window that opens
    with the first account created (and over the whole drain when `full`)."""
    await platform.start_http()
    run = uuid.uuid4().hex[:8]
    burst = await drive(platform.url, [sign_up(run, n) for n in range(ARGS.signups)], ARGS.concurrency)
    check_burst(burst, f"{platform.label}: sign-up burst")
    topic = SignUpRequested.topic
    on_topic = await platform.records_on(topic)
    row(
        platform.label,
        f"burst: {burst.accepted:,} of {burst.sent:,} accepted (202) in {burst.seconds:.1f} s "
        f"({burst.per_s:,.0f}/s); {on_topic:,} records on {topic}",
    )

    async def sample() -> dict[str, Any]:
        platform.check_alive()
        return {
            "at": time.monotonic(),
            "cpu": cpu_seconds(platform.workers),
            "accounts": await platform.count("gateway", "accounts"),
            "registered": await platform.count("volunteers", "email_index"),
            "done": await platform.count("gateway", "requests", {"status": "done"}),
            "carried": await platform.count("gateway", "requests"),  # done or rejected
            "lag": await platform.lag("gateway.intake", [topic]),
        }

    started = time.monotonic()
    platform.start_workers(workers)
    accounts = platform.storage("gateway").documents

    async def first_account() -> bool:
        platform.check_alive()
        return await accounts.count("accounts") > 0

    await until(first_account, 600, f"{platform.label}: the first sign-up carried out", every_s=0.2)
    first = await sample()
    row(platform.label, f"first account {first['at'] - started:.1f} s after the workers started; window opens")
    window_end, next_print = first["at"] + ARGS.window, first["at"] + 15
    accounts_now = first["accounts"]
    # only the accounts are counted inside the window: every read costs the drain some CPU
    while time.monotonic() < window_end and accounts_now < burst.accepted:
        await asyncio.sleep(min(1.0, max(0.0, window_end - time.monotonic())))
        platform.check_alive()
        accounts_now = await accounts.count("accounts")
        if time.monotonic() >= next_print:
            next_print += 15
            elapsed = time.monotonic() - first["at"]
            rate = (accounts_now - first["accounts"]) / elapsed
            row(platform.label, f"  at {elapsed:6.1f} s: accounts {accounts_now:,}, {rate:.1f}/s")
    window = await sample()
    figures = rates(first, window)
    figures |= {
        "workers": workers,
        "accepted": burst.accepted,
        "answered": dict(burst.answers),
        "burst_per_s": round(burst.per_s, 1),
        "records_on_topic": on_topic,
        "first_after_s": round(first["at"] - started, 1),
        "method": "window",
    }
    progress(platform, first, window, final=True)
    if full:
        deadline = time.monotonic() + ARGS.full_timeout
        last, moved, grew = window, window, window
        next_print = time.monotonic() + 30
        # over when every command has its outcome and the group committed them all
        while not (last["carried"] >= burst.accepted and last["lag"] == 0):
            now = time.monotonic()
            if now > deadline or now - moved["at"] > ARGS.stall:
                row("  DEFECT", platform.label, f"not drained {now - started:.0f} s after the workers started", last)
                break
            await asyncio.sleep(2)
            last = await sample()
            if last["accounts"] != grew["accounts"]:
                grew = last
            if last["accounts"] != moved["accounts"] or last["carried"] != moved["carried"]:
                moved = last
            if time.monotonic() >= next_print:
                next_print += 30
                progress(platform, first, last)
        await asyncio.sleep(3)  # a last look: anything beyond `accepted` would be a duplicate
        end = await sample()
        rejected = end["carried"] - end["done"]
        carried = min(end["registered"], end["accounts"])
        # the full drain's rate ends when the accounts stopped growing (all made, or the last one made)
        figures |= {
            "method": "full",
            "full": rates(first, grew) | {"drain_s": round(grew["at"] - started, 1)},
            "registered": end["registered"],
            "accounts": end["accounts"],
            "done": end["done"],
            "rejected": rejected,
            "lost": max(0, burst.accepted - carried),
            "duplicated": max(0, max(end["registered"], end["accounts"]) - burst.accepted),
        }
        row(
            platform.label,
            f"full drain: last account {grew['at'] - started:.1f} s after the workers started; accepted "
            f"{burst.accepted:,} / volunteers {end['registered']:,} / accounts {end['accounts']:,} / requests done "
            f"{end['done']:,}, rejected {rejected}; lost {figures['lost']}, duplicated {figures['duplicated']}",
        )
        if rejected:
            found = await platform.storage("gateway").documents.find("requests", {"status": "rejected"}, limit=5)
            row("  DEFECT", platform.label, f"{rejected} sign-ups rejected:", [d.get("problem") for d in found])
    else:
        figures["duplicated"] = max(0, max(window["registered"], window["accounts"]) - burst.accepted)
    return figures


def rates(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    seconds = max(1e-9, last["at"] - first["at"])
    made = last["accounts"] - first["accounts"]
    return {
        "window_s": round(seconds, 1),
        "per_s": round((last["accounts"] - first["accounts"]) / seconds, 2),  # accounts: the last step of each
        "registered_per_s": round((last["registered"] - first["registered"]) / seconds, 2),
        "done_per_s": round((last["done"] - first["done"]) / seconds, 2),  # written once per batch
        "lag_per_s": round((first["lag"] - last["lag"]) / seconds, 2),  # committed once per batch
        # the workers' CPU per account made: a hash is ~25 ms of it; work done twice shows here
        "worker_cpu_ms_per_signup": round((last["cpu"] - first["cpu"]) * 1000 / made, 1) if made else None,
    }


def progress(platform: Platform, first: dict[str, Any], last: dict[str, Any], final: bool = False) -> None:
    seconds = max(1e-9, last["at"] - first["at"])
    rate = (last["accounts"] - first["accounts"]) / seconds
    extra = f", done {last['done']:,}, lag {last['lag']:,}" if "lag" in last else ""
    if last["accounts"] > first["accounts"]:
        extra += f", workers' CPU {(last['cpu'] - first['cpu']) * 1000 / (last['accounts'] - first['accounts']):.0f} ms"
        extra += " a sign-up"
    row(
        platform.label,
        f"{'window' if final else '  at'} {seconds:6.1f} s: accounts {last['accounts']:,}{extra}, {rate:.1f}/s",
    )


# ---- 3. the application drain ----


@dataclass
class Setup:
    volunteers: list[str]
    missions: list[str]
    managers: dict[str, str]  # organisation id → its manager's access token
    manager_ids: dict[str, str]  # organisation id → its manager's account id
    mission_organization: dict[str, str]


async def api(
    client: httpx.AsyncClient, method: str, path: str, token: str | None, body: Any = None, ok: Sequence[int] = ()
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = await client.request(method, f"/api/v1{path}", headers=headers, json=body)
    if ok and answer.status_code not in ok:
        raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
    return answer


async def prepare(platform: Platform, mint: TokenMint, volunteers: int) -> Setup:
    """Through the public API: a referent invited, organisations registered with their managers' accounts and
    approved, missions published, volunteers signed up. Access tokens are minted rather than logged in for:
    the admin (no account needed by its routes), the referent, the managers, the volunteers."""
    run = uuid.uuid4().hex[:8]
    admin = await mint.token(f"drain-admin-{run}", "admin")
    setup = Setup([], [], {}, {}, {})
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as client:
        # the referent as one is made: invited, the token read in the invitation e-mail (the local mailbox)
        email = f"referente-{run}@exemple.fr"
        invitation = {"email": email, "departments": [DEPARTMENT]}
        await api(client, "POST", "/referent-invitations", admin, invitation, ok=(201,))
        letters: list[dict[str, Any]] = []

        async def invited() -> bool:
            platform.check_alive()
            letters[:] = await platform.storage("notifications").documents.find(MAILBOX, {"to": email})
            return bool(letters)

        await until(invited, 300, "the referent's invitation e-mail")
        token = re.search(r"token=([\w-]+)", letters[0]["text"])
        assert token is not None, "no token in the invitation e-mail"
        path = f"/referent-invitations/{token.group(1)}/accept"
        accepted = await api(client, "POST", path, None, {"password": PASSWORD}, ok=(201,))
        referent = await mint.token(accepted.json()["account_id"], "referent")

        async def appointed() -> bool:
            return (await api(client, "GET", f"/departments/{DEPARTMENT}/queue", referent)).status_code == 200

        await until(appointed, 120, "the referent appointed")
        for k in range(ARGS.organizations):
            registered = await api(
                client,
                "POST",
                "/organizations",
                None,
                {
                    "account": {"email": f"responsable{k}-{run}@exemple.fr", "password": PASSWORD},
                    "organization": {
                        "name": f"Entraide Vannes {k} {run}",
                        "kind": "association",
                        "rna": f"W5610{k:05d}",
                        "postal_code": POSTAL_CODE,
                    },
                },
                ok=(201,),
            )
            organization = registered.json()
            setup.manager_ids[organization["organization_id"]] = organization["account_id"]
            setup.managers[organization["organization_id"]] = await mint.token(organization["account_id"], "manager")

        async def queued(ids: set[str]) -> bool:
            answer = await api(client, "GET", f"/departments/{DEPARTMENT}/queue", referent, ok=(200,))
            return ids <= {entry["id"] for entry in answer.json()}

        await until(lambda: queued(set(setup.managers)), 120, "the organisations in the referent's queue")
        for organization_id in setup.managers:
            decision = {"decision": "approve"}
            await api(client, "POST", f"/moderation/organizations/{organization_id}/decision", referent, decision)

        async def approved() -> bool:
            for organization_id, manager in setup.managers.items():
                answer = await api(client, "GET", f"/organizations/{organization_id}", manager)
                if answer.status_code != 200 or answer.json()["status"] != "approved":
                    return False
            return True

        await until(approved, 120, "the organisations approved")
        slots = asyncio.Semaphore(8)
        organizations = list(setup.managers)

        async def draft(m: int) -> str:
            organization_id = organizations[m % len(organizations)]
            manager = setup.managers[organization_id]
            mission = {
                "title": f"Appels aux personnes isolées {m}",
                "description": "Appeler chaque semaine des personnes âgées isolées pendant la crise.",
                "domain": "keeping_in_touch",
                "remote": True,
                "places": 1000,
            }
            async with slots:
                path = f"/organizations/{organization_id}/missions"
                mission_id = str((await api(client, "POST", path, manager, mission, ok=(201,))).json()["mission_id"])
                await api(client, "POST", f"/missions/{mission_id}/submit", manager, ok=(204,))
            setup.mission_organization[mission_id] = organization_id
            return mission_id

        setup.missions = list(await asyncio.gather(*(draft(m) for m in range(ARGS.missions))))
        await until(lambda: queued(set(setup.missions)), 300, "the missions in the referent's queue", every_s=1)

        async def validate(mission_id: str) -> None:
            async with slots:
                path = f"/moderation/missions/{mission_id}/decision"
                await api(client, "POST", path, referent, {"decision": "validate"}, ok=(200, 201, 204))

        await asyncio.gather(*(validate(m) for m in setup.missions))
    # the volunteers: sign-ups through the API too, carried out by the workers running
    burst = await drive(platform.url, [sign_up(run, n) for n in range(volunteers)], ARGS.concurrency)
    check_burst(burst, f"{platform.label}: volunteers' sign-ups")
    requests = platform.storage("gateway").documents

    async def signed_up() -> bool:
        platform.check_alive()
        return await requests.count("requests", {"kind": "sign_up", "status": {"$ne": "pending"}}) >= burst.accepted

    await until(signed_up, 60 + volunteers, "the volunteers' sign-ups carried out", every_s=2)
    done = await requests.find("requests", {"kind": "sign_up", "status": "done"})
    setup.volunteers = [str(d["resource"]["volunteer_id"]) for d in done]

    async def published() -> bool:
        return await platform.count("volunteers", "missions", {"status": "published"}) >= len(setup.missions)

    await until(published, 300, "the missions published, as the volunteers service knows them", every_s=1)
    return setup


async def application_drains(platform: Platform, worker_counts: Sequence[int]) -> list[dict[str, Any]]:
    """One platform; for each worker count a batch of applications by volunteers of their own (at most
    `max_pending_applications` each, to distinct missions), POSTed with the workers stopped, then drained."""
    per_volunteer = platform.settings.max_pending_applications
    per_batch = math.ceil(ARGS.applications / per_volunteer)
    if ARGS.missions < per_volunteer:
        raise SystemExit(f"--missions must be at least {per_volunteer} (max_pending_applications)")
    mint = TokenMint(platform.settings)
    await platform.start_http()
    platform.start_workers(max(worker_counts))
    started = time.monotonic()
    setup = await prepare(platform, mint, per_batch * len(worker_counts))
    await platform.settle(600, "after the setup")
    row(
        platform.label,
        f"setup: {len(setup.volunteers):,} volunteers, {len(setup.missions)} missions published, "
        f"{len(setup.managers)} organisations, in {time.monotonic() - started:.0f} s",
    )
    platform.stop_workers()
    if len(setup.volunteers) < per_batch * len(worker_counts):
        raise RuntimeError(f"{platform.label}: only {len(setup.volunteers)} volunteers registered")
    gateway = platform.storage("gateway").documents
    roster = platform.storage("volunteers").documents
    deliveries = platform.storage("notifications").documents

    async def counts() -> tuple[int, int, int]:
        platform.check_alive()
        return (
            await gateway.count("requests", {"kind": "application"}),  # carried out: done, or rejected
            await roster.count("applications"),
            await deliveries.count("deliveries", {"template": "application_received"}),
        )

    results = []
    for batch, workers in enumerate(worker_counts):
        volunteers = setup.volunteers[batch * per_batch : (batch + 1) * per_batch]
        requests: list[Request] = []
        for n, volunteer in enumerate(volunteers):
            token = await mint.token(volunteer, "volunteer")
            for k in range(per_volunteer):
                if len(requests) < ARGS.applications:
                    mission = setup.missions[(n * per_volunteer + k) % len(setup.missions)]
                    requests.append((f"/api/v1/missions/{mission}/applications", b"{}", token))
        base = await counts()
        burst = await drive(platform.url, requests, ARGS.concurrency)
        check_burst(burst, f"{platform.label}: applications")
        expected = burst.accepted
        row(platform.label, f"{expected:,} applications accepted (202) in {burst.seconds:.1f} s; {workers} worker(s)")
        started = time.monotonic()
        platform.start_workers(workers)
        first_at = last_at = None
        first_seen = 0
        seen = (0, 0, 0)
        stage_done: list[float | None] = [None, None, None]  # when each of the three saw them all
        deadline, moved_at, before = started + ARGS.applications_timeout, started, seen
        while True:
            now_counts = await counts()
            at = time.monotonic()
            seen = (now_counts[0] - base[0], now_counts[1] - base[1], now_counts[2] - base[2])
            if first_at is None and min(seen) >= 1:
                first_at, first_seen = at, min(seen)
            for stage, count in enumerate(seen):
                if stage_done[stage] is None and count >= expected:
                    stage_done[stage] = round(at - started, 1)
            if min(seen) >= expected:
                last_at = at
                break
            if seen != before:
                moved_at, before = at, seen
            if at > deadline or (first_at is not None and at - moved_at > ARGS.stall):
                break
            await asyncio.sleep(ARGS.poll or (0.25 if platform.backend == "embedded" else 1.0))
        if first_at is None or last_at is None:
            row(
                "  DEFECT",
                platform.label,
                f"applications not all visible {time.monotonic() - started:.0f} s after the workers started "
                "(requests carried out, roster, managers' e-mails):",
                seen,
                f"of {expected}",
            )
            rate = None
        else:
            rate = round((expected - first_seen) / max(1e-9, last_at - first_at), 1)
            row(
                platform.label,
                f"applications: first visible in all three {first_at - started:.1f} s after the workers started, "
                f"last {last_at - started:.1f} s: {rate:,.1f}/s ({workers} worker(s)); all carried out at "
                f"{stage_done[0]} s, in the roster at {stage_done[1]} s, e-mailed at {stage_done[2]} s",
            )
        rejected = await gateway.count("requests", {"kind": "application", "status": "rejected"})
        if rejected:
            found = await gateway.find("requests", {"kind": "application", "status": "rejected"}, limit=5)
            row("  DEFECT", platform.label, f"{rejected} applications rejected:", [d.get("problem") for d in found])
        await platform.settle(600, "after the applications")
        platform.stop_workers()
        results.append(
            {
                "workers": workers,
                "applications": expected,
                "answered": dict(burst.answers),
                "per_s": rate,
                "first_after_s": None if first_at is None else round(first_at - started, 1),
                "last_after_s": None if last_at is None else round(last_at - started, 1),
                "visible": {"requests_carried_out": seen[0], "roster": seen[1], "manager_emails": seen[2]},
                "all_visible_after_s": dict(
                    zip(("requests_carried_out", "roster", "manager_emails"), stage_done, strict=True)
                ),
                "rejected_so_far": rejected,
            }
        )
    # the managers' lists, through the API, hold every application carried out (tokens minted anew: a drain
    # may outlast an access token)
    managers = {o: await mint.token(setup.manager_ids[o], "manager") for o in setup.managers}
    listed = 0
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as client:
        for mission_id, organization_id in setup.mission_organization.items():
            path = f"/missions/{mission_id}/applications"
            answer = await api(client, "GET", path, managers[organization_id])
            if answer.status_code != 200:
                row("  DEFECT", platform.label, f"GET {path}: {answer.status_code} {answer.text[:300]}")
                break
            listed += len(answer.json())
    total = sum(r["applications"] for r in results)
    row(platform.label, f"managers' lists through the API: {listed:,} applications (accepted {total:,})")
    if listed != total:
        row("  DEFECT", platform.label, f"the managers' lists hold {listed:,}, {total:,} were accepted")
    for result in results:
        result["managers_lists_total"] = listed
    return results


# ---- 4. the embedded default under a burst ----


async def embedded_intake(platform: Platform) -> dict[str, Any]:
    """`python -m services` as `make run` starts it: HTTP here, consumers in its own worker process."""
    await platform.start_http(consumers=True)
    run = uuid.uuid4().hex[:8]
    clients = ARGS.intake_clients
    warmup = [sign_up(f"warm{run}", n) for n in range(clients)]  # one per connection: opened before the clock
    accounts = platform.storage("gateway").documents

    async def draining() -> None:  # the clock starts once the worker carries sign-ups out
        async def carried_out() -> bool:
            platform.check_alive()
            return await accounts.count("accounts") > 0

        await until(carried_out, 300, "the first sign-up carried out by the worker", every_s=0.1)

    signups = [sign_up(run, n) for n in range(ARGS.intake_signups)]
    before = time.monotonic()
    burst = await drive(platform.url, signups, clients, warmup=warmup, then=draining)
    check_burst(burst, "embedded default: sign-ups")
    carried = await accounts.count("accounts")
    row(platform.label, f"worker draining {time.monotonic() - before - burst.seconds:.1f} s after the warm-up began")
    figures = {
        "signups": burst.sent,
        "clients": clients,
        "accepted": burst.accepted,
        "answered": dict(burst.answers),
        "per_s": round(burst.per_s, 1),
        "p50_ms": round(burst.percentile(50), 1),
        "p99_ms": round(burst.percentile(99), 1),
        "seconds": round(burst.seconds, 2),
        "carried_out_by_burst_end": carried,  # warm-up sign-ups included
    }
    row(
        platform.label,
        f"{burst.accepted:,} of {burst.sent:,} accepted in {burst.seconds:.2f} s: {burst.per_s:,.0f}/s, "
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; {carried} carried out by its end",
    )
    return figures


# ---- what serves the production path ----


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port, from /proc (Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                for fd in (proc / "fd").iterdir():
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def go_module(pid: int, module: str) -> str | None:
    """A Go binary's dependency version, from the build information it embeds (`go version -m`)."""
    with contextlib.suppress(OSError):
        found = re.search(
            rb"(?:dep|mod)\t" + re.escape(module.encode()) + rb"(?:/v\d+)?\t(v[0-9][^\t\n]*)",
            Path(f"/proc/{pid}/exe").read_bytes(),
        )
        if found:
            return found.group(1).decode().lstrip("v")
    return None


def postgres_version(url: str) -> str:
    port = int(m.group(1)) if (m := re.search(r"@?[^/:@]+:(\d+)(?:/|$|\?)", url.split("://", 1)[-1])) else 5432
    pid = listening_pid(port)
    if pid is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            exe = os.readlink(f"/proc/{pid}/exe")
            answer = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
            if found := re.search(r"PostgreSQL\)?\s+([\d.]+)", answer):
                return f"PostgreSQL {found.group(1)}"
    return "PostgreSQL"


async def describe_store(mongodb_url: str) -> str:
    """What serves the MongoDB protocol: `buildInfo`/`serverStatus`, then the FerretDB process itself (its
    binary's module version, and its backend from its command line or environment)."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        build = await client.admin.command("buildInfo")
        status = await client.admin.command("serverStatus")
    finally:
        await client.close()
    ferretdb = build.get("ferretdbVersion") or status.get("ferretdbVersion")
    if ferretdb is None and status.get("process") != "ferretdb":
        return f"MongoDB {build.get('version')}"
    version = str(ferretdb).lstrip("v") if ferretdb and ferretdb != "unknown" else None
    pid = status.get("pid")
    found, backend = ferretdb_process(pid) if isinstance(pid, int) else (None, "an unknown backend")
    return f"FerretDB {version or found or '(version unknown)'} on {backend}"


def ferretdb_process(pid: int) -> tuple[str | None, str]:
    """FerretDB's version from its binary's build information, its backend from its flags or environment."""
    if "ferretdb" not in " ".join(cmdline(pid)).lower():  # another machine, or another pid namespace
        return None, "an unknown backend (its process is not visible here)"
    version = go_module(pid, "github.com/FerretDB/FerretDB")
    environ = ""
    with contextlib.suppress(OSError):
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", " ")
    words = " ".join(cmdline(pid)) + " " + environ
    postgres = re.search(r"(?:postgresql-url|POSTGRESQL_URL)[= ](\S+)", words)
    if postgres or re.search(r"handler[= ](?:pg|postgresql)\b", words):
        return version, postgres_version(postgres.group(1) if postgres else "")
    if "sqlite" in words.lower():
        sqlite = go_module(pid, "modernc.org/sqlite")
        return version, f"SQLite (modernc.org/sqlite {sqlite})" if sqlite else "SQLite"
    return version, "an unknown backend"


def kafka_version(bootstrap: str) -> str:
    """From the command line of the broker listening on the bootstrap port (its jars' directory), else of any
    broker of this machine."""
    pid = listening_pid(int(bootstrap.split(",")[0].rsplit(":", 1)[1]))
    candidates = [pid] if pid else []
    candidates += [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    for candidate in candidates:
        words = " ".join(cmdline(candidate))
        if "kafka.Kafka" in words and (found := re.search(r"kafka_\d+\.\d+-([\d.]+)\.jar|kafka-([\d.]+)/libs", words)):
            return f"Kafka {found.group(1) or found.group(2)}"
    return "Kafka"


# ---- the report ----


def save(figures: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Read-modify-write: other benchmarks write their own keys in the same file."""
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    merged = previous | figures
    details = previous.get("drain_details", {}) | figures.get("drain_details", {})
    merged["drain_details"] = details
    full = [
        d
        for name, by_workers in details.items()
        if name.startswith("signup_")
        for d in by_workers.values()
        if d.get("method") == "full"
    ]
    merged["lost"] = sum(d["lost"] for d in full) if full else None
    merged["duplicated"] = sum(d["duplicated"] for d in full) if full else None
    if write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def ratio(value: float | None, ceiling: float | None) -> str:
    return f"{value / ceiling:.2f}" if value is not None and ceiling else ""


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=110, break_on_hyphens=False, break_long_words=False)


def section(merged: dict[str, Any]) -> str:
    """The Drain section of docs/benchmarks.md, from drain.json's figures (this run's and earlier ones')."""
    details = merged["drain_details"]
    ceiling = merged.get("hash_ceiling_per_s")
    hashing = details.get("ceiling", {})
    intake = details.get("intake_embedded")
    rows, notes = [], []
    for backend in ("embedded", PRODUCTION):
        key = KEYS[backend]
        signups = sorted((int(w), d) for w, d in details.get(f"signup_{key}", {}).items())
        for workers, d in signups:
            value = d["full"]["per_s"] if d["method"] == "full" else d["per_s"]
            how = f"full drain of {d['accepted']:,}" if d["method"] == "full" else f"{d['window_s']} s window"
            rows.append(
                f"| sign-up drain, {NAMES[backend]}, {workers} worker(s): sign-ups/s ({how}) | {number(value)} "
                f"| {ratio(value, d.get('ceiling', ceiling))} | ≥ {SIGNUP_RATIO_TARGET} |"
            )
            if d["method"] == "full":
                rows.append(
                    f"| … same run, its first {d['window_s']} s window | {number(d['per_s'])} "
                    f"| {ratio(d['per_s'], d.get('ceiling', ceiling))} | |"
                )
                notes.append(
                    f"{NAMES[backend]}, {workers} worker(s), drained fully (last account {d['full']['drain_s']} s "
                    f"after the workers started): accepted {d['accepted']:,}, volunteers registered "
                    f"{d['registered']:,}, accounts {d['accounts']:,}, requests done {d['done']:,} (rejected "
                    f"{d['rejected']}): lost {d['lost']}, duplicated {d['duplicated']}."
                )
        if len(signups) > 1 and signups[0][1]["per_s"]:
            (few, low), (most, high) = signups[0], signups[-1]
            cpu = ", ".join(
                f"{workers} worker(s) {d.get('worker_cpu_ms_per_signup', '—')} ms" for workers, d in signups
            )
            notes.append(
                f"{NAMES[backend]}: {most} workers drain {high['per_s'] / low['per_s']:.2f}× what {few} does "
                f"(window rates, {low['per_s']:,.1f} → {high['per_s']:,.1f} sign-ups/s). The workers' CPU a "
                f"sign-up over the window: {cpu} (a hash alone: {hashing.get('cpu_ms_per_hash', '—')} ms)."
            )
        for workers, d in sorted((int(w), d) for w, d in details.get(f"applications_{key}", {}).items()):
            rows.append(
                f"| application drain, {NAMES[backend]}, {workers} worker(s): applications/s "
                f"({d['applications']:,}) | {number(d['per_s'])} | | ≥ {APPLICATION_TARGETS[backend]:.0f}/s |"
            )
    if intake:
        rows += [
            f"| embedded default (`python -m services`), {intake['signups']:,} sign-ups from {intake['clients']} "
            f"clients: accepted/s | {number(intake['per_s'])} | | ≥ {INTAKE_TARGET_PER_S:.0f}/s |",
            f"| … p50 / p99 (ms) | {intake['p50_ms']} / {intake['p99_ms']} | | p99 < {INTAKE_TARGET_P99_MS:.0f} ms |",
        ]
    problems = {k: v["counts"] for k, v in details.get("logs", {}).items() if v.get("counts")}
    sizes = {d["accepted"] for k, by in details.items() if k.startswith("signup_") for d in by.values()}
    burst_sizes = " or ".join(f"{n:,}" for n in sorted(sizes))
    has = {kind: any(k.startswith(kind) for k in details) for kind in ("signup_", "applications_")}
    texts = [
        f"""Machine: {merged.get("drain_machine")}; {merged.get("drain_kafka", "Kafka")} and
        {merged.get("store", "—")} (what scripts/infra runs, read from the server) on the same cores;
        {merged.get("drain_date")}; 1-minute load average up to {merged.get("drain_load_average_max", "—")}
        during the run (2 would be the two cores busy: more is other jobs waiting for them). Each configuration
        runs on a fresh platform: a new data directory
        (embedded), a new namespace of topics and databases (Kafka + FerretDB). An HTTP process (`python -m
        services`, CIVIQUE_RUN_CONSUMERS=false: it serves and relays, consumes nothing) takes the burst through
        the public API ({merged.get("drain_concurrency")} requests at once over kept-alive connections, every
        answer checked to be a 202; the client is a minimal HTTP/1.1 one on asyncio streams: httpx.AsyncClient
        served ~370 requests/s of the bare endpoint on these cores against ~9,700/s for it, and would have been
        the bottleneck); then N worker processes (`CIVIQUE_WORKER=true python -m services`, as `start_workers`
        starts them, nice 10) drain it while the HTTP process relays their events. No SMTP host: e-mails go to
        the local mailbox. The stores are read through `open_storage`, the committed lag through the bus
        port.""",
        f"""Ceiling, same run: argon2id (`HASHER`, {hashing.get("hash_ms", "—")} ms a hash alone) hashed by
        {hashing.get("threads", "—")} threads (os.cpu_count()) for {hashing.get("seconds", "—")} s:
        **{number(ceiling)} hashes/s**. A sign-up costs one hash: no sign-up drain can pass it.""",
        f"""Sign-up drain: {burst_sizes or "the"} sign-ups accepted, then the workers start. Rate = accounts
        created per second (the last step of a sign-up, written at once) over a window that opens with the first
        account; a full drain of 20,000 at ~40/s takes ~8 min a configuration, so only the largest worker count of
        each backend is drained fully (--full), which also checks accepted = volunteers = accounts. Volunteers
        registered, `requests` documents done and the committed lag of `gateway.intake` are in drain.json as
        checks (`registered_per_s`, `done_per_s`, `lag_per_s`): the last two move by whole batches (one write and
        one commit a batch of up to 500).""",
        f"""Application drain: one platform a backend; a referent, {merged.get("drain_organizations", "—")}
        organisations approved and {merged.get("drain_missions", "—")} remote missions published, volunteers
        signed up, all through the API; the workers stopped, each volunteer applies to `max_pending_applications` (5)
        distinct missions as itself (access tokens minted by the gateway's own `Accounts.issue` with the
        platform's jwt secret, not by logging in: a login costs a hash); then the workers start. Rate = from the
        first to the last application visible in all three of: the gateway's request record (carried out), the
        volunteers service's roster read model (`applications`, which the manager's list of applications reads;
        every list is also read through the API at the end) and the manager's e-mail in the notifications
        delivery log. One batch of its own volunteers a worker count, on a settled platform.""",
    ]
    texts = [
        text
        for n, text in enumerate(texts)
        if n < 2 or (n == 2 and has["signup_"]) or (n == 3 and has["applications_"])
    ]
    if intake:
        texts.append(
            f"""Embedded default: `python -m services` as `make run` starts it (one worker process of its own, nice
            10, for the consumers and jobs), {intake["signups"]:,} sign-ups from {intake["clients"]} clients over
            kept-alive connections while the drain runs: one warm-up sign-up a connection, then the clock starts
            once the worker has carried the first out; {intake["carried_out_by_burst_end"]:,} were carried out
            by the end of the burst."""
        )
    if problems:
        texts.append(f"Warnings and errors the platform logged, by configuration: {json.dumps(problems)}.")
    lines = [
        "## Drain: what the workers carry out after a burst (benchmarks/drain.py)",
        "",
        *(line for text in texts[:2] for line in (paragraph(text), "")),
        "| figure | value | ratio to the ceiling | target |",
        "|---|---|---|---|",
        *rows,
        "",
        *(line for text in texts[2:] for line in (paragraph(text), "")),
        *(line for note in notes for line in (paragraph(note), "")),
    ]
    return "\n".join(lines).rstrip() + "\n"


# ---- main ----


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backends", default=f"embedded,{PRODUCTION}", help="comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    parser.add_argument("--signups", type=int, default=20_000, help="sign-ups of each drain's burst")
    parser.add_argument("--window", type=float, default=120.0, help="seconds of the sign-up drain's window")
    parser.add_argument(
        "--full",
        nargs="?",
        const="all",
        help="drain fully the largest worker count of each backend (or of these, comma-separated)",
    )
    parser.add_argument("--full-timeout", type=float, default=5400.0)
    parser.add_argument("--applications", type=int, default=5_000, help="applications of each drain")
    parser.add_argument("--applications-timeout", type=float, default=3600.0)
    parser.add_argument("--missions", type=int, default=200)
    parser.add_argument("--organizations", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="requests at once in the bursts")
    parser.add_argument("--intake-signups", type=int, default=2_000)
    parser.add_argument("--intake-clients", type=int, default=32)
    parser.add_argument("--hash-seconds", type=float, default=5.0)
    parser.add_argument(
        "--poll", type=float, help="seconds between reads of the application drain (0.25 embedded, 1 on Kafka)"
    )
    parser.add_argument("--stall", type=float, default=120.0, help="give up a drain that moved not for this long")
    parser.add_argument("--skip-intake", action="store_true")
    parser.add_argument("--skip-signups", action="store_true")
    parser.add_argument("--skip-applications", action="store_true")
    parser.add_argument("--keep-data", action="store_true", help="keep data directories, topics and databases")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--no-write", action="store_true", help="print only: drain.json and the report untouched")
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    args.full = [] if args.full is None else args.backends if args.full == "all" else args.full.split(",")
    for backend in [*args.backends, *args.full]:
        if backend not in NAMES:
            parser.error(f"unknown backend {backend}")
    return args


ARGS = argparse.Namespace()


def infra_up() -> dict[str, str]:
    """scripts/infra starts Kafka and the MongoDB-protocol server if they are not running; its stdout says where."""
    up = subprocess.run([ROOT / "scripts/infra", "up"], check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)


class LoadWatch:
    """The machine's highest 1-minute load average while the benchmark runs: what else shared the cores."""

    def __init__(self) -> None:
        self.highest = os.getloadavg()[0]
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(5.0):
            self.highest = max(self.highest, os.getloadavg()[0])

    def stop(self) -> float:
        self._stop.set()
        return round(self.highest, 1)


async def run(children: Children, scratch: Path) -> None:
    load = LoadWatch()
    # drain.json is shared with other benchmarks: the keys of this one that are not the issue's are prefixed
    figures: dict[str, Any] = {
        "drain_machine": machine(),
        "drain_date": datetime.now(UTC).date().isoformat(),
        "drain_concurrency": ARGS.concurrency,
    }
    if not ARGS.skip_signups:
        figures["signups"] = ARGS.signups
    if not ARGS.skip_applications:
        figures |= {"drain_missions": ARGS.missions, "drain_organizations": ARGS.organizations}
    details: dict[str, Any] = {"logs": {}}
    row("configuration", "figure")
    threads = os.cpu_count() or 1
    ceiling: dict[str, float] = {}
    if not ARGS.skip_signups:  # the sign-ups' ceiling, kept from the run that measured them otherwise
        ceiling = hash_ceiling(ARGS.hash_seconds, threads)
        figures["hash_ceiling_per_s"] = ceiling["per_s"]
        details["ceiling"] = ceiling | {"seconds": ARGS.hash_seconds}
        row(
            "ceiling",
            f"{ceiling['per_s']:,.1f} argon2id hashes/s, {threads} threads ({ceiling['hash_ms']} ms one alone, "
            f"{ceiling['cpu_ms_per_hash']} ms of CPU each)",
        )
    servers: dict[str, str] = {}
    if PRODUCTION in ARGS.backends:
        servers = infra_up()
        figures["store"] = await describe_store(servers["MONGODB_URL"])
        figures["drain_kafka"] = kafka_version(servers["KAFKA_BOOTSTRAP_SERVERS"])
        row("production path", f"{figures['drain_kafka']}, {figures['store']}")

    async def configuration(label: str, backend: str, measure: Callable[[Platform], Awaitable[Any]]) -> Any:
        platform = new_platform(backend, label, scratch, servers, children)
        try:
            return await measure(platform)
        except Exception as exc:  # one configuration's failure is reported; the others still run
            row("  DEFECT", label, f"{type(exc).__name__}: {exc}")
            return None
        finally:
            await platform.close(ARGS.keep_data)
            details["logs"][label] = problems = log_problems(platform.logs)
            if problems["counts"]:
                row("  logs", label, problems["counts"], *problems["first"])

    if not ARGS.skip_intake:
        intake = await configuration("intake-embedded", "embedded", embedded_intake)
        if intake:
            details["intake_embedded"] = intake
            figures |= {
                "embedded_intake_per_s": intake["per_s"],
                "embedded_intake_p50_ms": intake["p50_ms"],
                "embedded_intake_p99_ms": intake["p99_ms"],
            }
    for backend in ARGS.backends:
        key = KEYS[backend]
        if not ARGS.skip_signups:
            by_workers: dict[str, Any] = {}
            for workers in ARGS.workers:
                full = backend in ARGS.full and workers == max(ARGS.workers)

                async def measure(platform: Platform, workers: int = workers, full: bool = full) -> Any:
                    return await signup_drain(platform, workers, full)

                result = await configuration(f"signups-{key}-{workers}w", backend, measure)
                if result:
                    result["ceiling"] = ceiling["per_s"]
                    by_workers[str(workers)] = result
                    value = result["full"]["per_s"] if result["method"] == "full" else result["per_s"]
                    row(
                        f"signups-{key}-{workers}w",
                        f"SIGN-UP DRAIN {value:,.1f}/s = {value / ceiling['per_s']:.2f} of the ceiling "
                        f"({result['method']})",
                    )
            if by_workers:
                details[f"signup_{key}"] = by_workers
                figures[f"signup_drain_{key}_per_s_by_workers"] = {
                    w: (r["full"]["per_s"] if r["method"] == "full" else r["per_s"]) for w, r in by_workers.items()
                }
                figures[f"signup_drain_{key}_window_per_s_by_workers"] = {w: r["per_s"] for w, r in by_workers.items()}
                most = by_workers[max(by_workers, key=int)]
                figures[f"signup_drain_{key}_per_s"] = (
                    most["full"]["per_s"] if most["method"] == "full" else most["per_s"]
                )
                figures[f"signup_drain_{key}_ratio"] = round(figures[f"signup_drain_{key}_per_s"] / ceiling["per_s"], 3)
        if not ARGS.skip_applications:
            results = await configuration(f"applications-{key}", backend, lambda p: application_drains(p, ARGS.workers))
            if results:
                applications = {str(r["workers"]): r for r in results}
                details[f"applications_{key}"] = applications
                figures[f"application_drain_{key}_per_s_by_workers"] = {w: r["per_s"] for w, r in applications.items()}
                figures[f"application_drain_{key}_per_s"] = applications[max(applications, key=int)]["per_s"]
    figures["drain_details"] = details
    summary = {k: v for k, v in figures.items() if k != "drain_details"}
    print(json.dumps(summary, indent=2))
    figures["drain_load_average_max"] = load.stop()
    merged = save(figures, write=not ARGS.no_write)
    if ARGS.no_write:
        print(section(merged))
        return
    write_section(section(merged))
    print(f"wrote {OUT.relative_to(ROOT)} and the Drain section of docs/benchmarks.md; logs in {scratch}")


def main() -> None:
    global ARGS
    ARGS = parse()
    for name in [k for k in os.environ if k.startswith("CIVIQUE_")]:
        del os.environ[name]  # the benchmark's own Settings read nothing from the caller
    global CHILDREN
    scratch = Path(tempfile.mkdtemp(prefix="civique-drain-"))
    children = CHILDREN = Children()
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # set before asyncio.run, which then installs none of its own
    try:
        asyncio.run(run(children, scratch))
    except KeyboardInterrupt:
        print("interrupted: stopping the platform's processes", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        children.stop_all()


if __name__ == "__main__":
    main()
