"""Spike benchmark: a burst of sign-ups on Kafka + FerretDB, against a bare FastAPI endpoint.

python benchmarks/spike.py [--users 32] [--seconds 10] [--drain-within 3600] [--no-report | --rewrite-section]
Starts the servers with scripts/infra, then the gateway as it is deployed for a spike: an HTTP-only
replica (CIVIQUE_RUN_CONSUMERS=false) that validates, seals and publishes each sign-up to Kafka before
its 202. Drives it with locust (headless); the burst queues in Kafka. Right after, drives a bare FastAPI
app served by uvicorn the same way (both bursts meet the same machine). Then starts the workers (every
service and consumer group in one process; on a real deployment they have machines of their own, here
they would share the 2 cores with the burst) and times the drain. Reports accepted sign-ups/s, p50/p99,
the ratio to the bare endpoint, the time to drain, and that N accepted requests made N volunteers; with
the CPU each server process (and the broker) spent per request. Writes docs/benchmarks/spike.json and the
spike section of docs/benchmarks.md, unless --no-report (a short iteration: a small burst, the drain cut
at --drain-within seconds, still checked).
"""

import argparse
import asyncio
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from shared.events import SignUpRequested  # noqa: E402
from shared.runtime.backend import open_storage  # noqa: E402
from shared.runtime.kafka import KafkaEventBus  # noqa: E402
from shared.runtime.settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(url: str, deadline: float = 90) -> None:
    import httpx

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def warm_up(url: str) -> None:
    """One sign-up before the burst, as a replica serving a spike has had: the producer connected, the
    intake topic's leaders known, the hour's intake key made. It is accepted and drained like the others."""
    import httpx

    body = {
        "password": "Cerf-volant bleu 2026 !",
        "volunteer": {
            "first_name": "Camille",
            "last_name": "Avant",
            "email": f"spike-warm-{uuid.uuid4().hex}@exemple.fr",
            "phone": "06 12 34 56 78",
            "birth_date": "1990-05-04",
            "postal_code": "56000",
            "domains": ["keeping_in_touch"],
            "availability": ["evenings"],
        },
    }
    answer = httpx.post(f"{url}/api/v1/volunteers", json=body, timeout=30)
    if answer.status_code != 202:
        raise SystemExit(f"the warm-up sign-up was answered {answer.status_code}: {answer.text}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def native_parts(pid: int) -> list[str]:
    """The compiled event loop and HTTP parser a server runs on, read from its memory map: both servers
    must run on the same ones (uvloop, httptools) for the ratio to be fair."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in ("uvloop", "httptools") if f"/{name}/" in maps]


def kafka_pid() -> int | None:
    status = subprocess.run([ROOT / "scripts/infra", "status"], capture_output=True, text=True).stdout
    found = next((line for line in status.splitlines() if line.startswith("kafka: running (pid ")), None)
    return int(found.split("pid ")[1].rstrip(")")) if found else None


def locust(host: str, target: str, users: int, seconds: int, out: Path, server: int) -> dict[str, float]:
    """Drive `host` with locust; the answers' figures, and the CPU the server (pid `server`) and the broker
    spent per request meanwhile."""
    prefix = out / target
    broker = kafka_pid()
    before = cpu_seconds(server), cpu_seconds(broker) if broker else 0.0
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "benchmarks/locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--host",
            host,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=os.environ | {"SPIKE_TARGET": target},
        check=True,
        capture_output=True,
    )
    after = cpu_seconds(server), cpu_seconds(broker) if broker else 0.0
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    requests = max(1, int(row["Request Count"]))
    return {
        "server_cpu_us": round(1e6 * (after[0] - before[0]) / requests),
        "broker_cpu_us": round(1e6 * (after[1] - before[1]) / requests),
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "answered_202": int(row["Request Count"]) - int(row["Failure Count"]),
        "per_s": float(row["Requests/s"]) * (1 - int(row["Failure Count"]) / max(1, int(row["Request Count"]))),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = (
        int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
        // 1024
        // 1024
    )
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB RAM, {system}, Python {platform.python_version()}"


async def records_on(settings: Settings, topic: str) -> int:
    """How many records `topic` holds, read from the broker: the lag of a group that never consumed it.

    Every 202 of a sign-up comes after Kafka acknowledged its command (ADR 0005), so this counts the
    accepted sign-ups, those whose answer locust dropped when it stopped included; unlike the gateway's
    `civique_intake_accepted_total`, a per-process counter that starts again at 0 with the process.
    """
    bus = KafkaEventBus(settings.kafka_bootstrap_servers, namespace=settings.namespace, partitions=settings.partitions)
    try:
        return sum((await bus.lag(f"spike-count-{uuid.uuid4().hex[:8]}", [topic])).values())
    finally:
        await bus.close()


async def count(settings: Settings, service: str, collection: str) -> int:
    storage = open_storage(settings, service)
    try:
        return await storage.documents.count(collection)
    finally:
        await storage.close()


def bare_burst(users: int, seconds: int, scratch: Path) -> tuple[dict[str, float], list[str]]:
    """The bare endpoint under the same load, served by uvicorn the same way as the gateway."""
    port = free_port()
    bare_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.bare:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",  # what the gateway's uvicorn.run picks by itself ("auto"), said outright
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=ROOT,
    )
    try:
        wait_listening(f"http://127.0.0.1:{port}/hello")
        bare_parts = native_parts(bare_process.pid)
        bare = locust(f"http://127.0.0.1:{port}", "bare", users, seconds, scratch, bare_process.pid)
    finally:
        bare_process.terminate()
        bare_process.wait(timeout=30)
    return bare, bare_parts


def section(figures: dict[str, Any]) -> str:
    """The spike's section of docs/benchmarks.md, from its figures (docs/benchmarks/spike.json)."""
    parts = " + ".join(figures["servers_run_on"]["gateway"]) or "asyncio and h11"
    return f"""## Spike: sign-ups through the gateway (benchmarks/spike.py)

Machine: {figures["machine"]}. Kafka 4.1.1 and FerretDB 1.24.2 on the same machine; the gateway as an
HTTP-only replica (`python -m services.gateway`, uvicorn, one process, CIVIQUE_RUN_CONSUMERS=false);
locust (FastHttpUser, {figures["users"]} users, {figures["seconds"]} s) on the same 2 cores. The burst queues in Kafka;
the bare FastAPI endpoint, served by uvicorn the same way, takes the same load right after; then the
workers (every service and consumer group in one process, `python -m services`) start and the drain is
timed from there. The servers are compared within a minute of each other;
both servers run on {parts}, without access log. Accepted = records on the intake topic (Kafka
acknowledged each command before its 202), read from the broker after the burst; locust received
{figures["answered_202"]} of their 202 answers before it stopped (one sign-up before the burst warmed the
gateway up: the producer connected, the hour's intake key made). CPU = user + system time of the process
during the load, divided by the requests (the broker's includes its own idle work).

| figure | value |
|---|---|
| accepted sign-ups/s (202) | {figures["accepted_per_s"]:.0f} |
| bare endpoint requests/s | {figures["bare_per_s"]:.0f} |
| ratio sign-up / bare | {figures["ratio"]} |
| sign-up p50 / p99 (ms) | {figures["p50_ms"]} / {figures["p99_ms"]} |
| bare p50 / p99 (ms) | {figures["bare_p50_ms"]} / {figures["bare_p99_ms"]} |
| CPU per request: gateway / bare server (µs) | {figures["gateway_cpu_us"]} / {figures["bare_cpu_us"]} |
| CPU of the broker per sign-up (µs) | {figures["broker_cpu_us"]} |
| accepted / registered volunteers | {figures["accepted"]} / {figures["registered"]} |
| lost / duplicated | {figures["lost"]} / {figures["duplicated"]} |
| time to drain after the burst (s) | {figures["drain_s"]} |

Where a sign-up's time goes (ADR 0010). In wall time, mostly in waiting for Kafka's acknowledgement:
measured apart at 1,800 sign-ups/s on this machine, the publish took 7 ms at the median and 9 ms on average
of a sign-up's 17: aiokafka keeps one produce request in flight per broker, so a command waits for the
request before its own, and the broker answers late when the 2 cores are busy (locust, the gateway, the
broker itself and, here, other work). In CPU (the app called in process with the bus stubbed, the least
of repeated rounds): about 125 µs in the app, against 47 µs for the bare endpoint's whole app. The
middlewares around it take 20 (the correlation id and the timing 8, the body limit, FastAPI's outer
layers); reading the body, the model's validation, the rate limits and the password 40; the intake 65:
the signed request id 12, sealing 8, the command's envelope and its JSON 20, the publish timeout 10, the
202's body 10. aiokafka adds about 60 µs a sign-up (enqueueing, murmur2 of the key with our partitioner,
its sender and the produce requests, some 14 sign-ups each) and uvicorn about 40 (HTTP parsing and the
socket, as for the bare endpoint); the rest of the gateway's CPU figure above is the cores it shares with
locust (about 150 µs of locust's CPU a sign-up, 110 a bare request) and the broker.
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--drain-within", type=float, default=3600, help="seconds the workers get to drain")
    parser.add_argument("--no-report", action="store_true", help="leave docs/benchmarks.md and spike.json as they are")
    parser.add_argument("--rewrite-section", action="store_true", help="only write the section again from spike.json")
    args = parser.parse_args()
    if args.rewrite_section:
        write_section(section(json.loads((ROOT / "docs" / "benchmarks" / "spike.json").read_text())))
        return
    servers = dict(
        line.split("=", 1)
        for line in subprocess.run(
            [ROOT / "scripts/infra", "up"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        if "=" in line
    )
    settings = Settings(
        backend="kafka+mongo",
        kafka_bootstrap_servers=servers["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_url=servers["MONGODB_URL"],
        namespace=f"spike{uuid.uuid4().hex[:8]}_",
        jwt_secret="spike-benchmark-secret-long-enough-for-hs256",
        internal_token="spike",
        link_secret="spike",
        rate_limit_per_minute=10_000_000,
        sensitive_rate_limit_per_minute=10_000_000,
        ip_rate_limit_per_minute=10_000_000,
        sensitive_ip_limit_per_minute=10_000_000,
        sign_up_limit_per_second=10_000_000,
        log_level="warning",
    )
    env = os.environ | {f"CIVIQUE_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}
    out = ROOT / "docs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(f"/tmp/civique-spike-{uuid.uuid4().hex[:6]}")
    scratch.mkdir()

    front_port, worker_port = free_port(), free_port()
    worker_url = f"http://127.0.0.1:{worker_port}"
    front = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=ROOT,
        env=env
        | {
            "CIVIQUE_PORT": str(front_port),
            "CIVIQUE_RUN_CONSUMERS": "false",
            **{f"CIVIQUE_{name.upper()}_URL": worker_url for name in ("missions", "moderation", "volunteers")},
        },
        stdout=subprocess.DEVNULL,
    )
    worker = None
    try:
        wait_listening(f"http://127.0.0.1:{front_port}/readyz")
        warm_up(f"http://127.0.0.1:{front_port}")
        front_parts = native_parts(front.pid)
        spike = locust(f"http://127.0.0.1:{front_port}", "signup", args.users, args.seconds, scratch, front.pid)
        # counted on the intake topic: locust drops the answers still in flight when it stops, and the
        # gateway's counter is per process (a restarted gateway starts it again at 0)
        accepted = asyncio.run(records_on(settings, SignUpRequested.topic))
        front.terminate()
        front.wait(timeout=60)
        # right after, so that both bursts meet the same machine; the drain comes after both
        bare, bare_parts = bare_burst(args.users, args.seconds, scratch)
        # the burst waits in Kafka; the workers (on machines of their own in production) start now
        started = time.monotonic()
        worker = subprocess.Popen(
            [sys.executable, "-m", "services"],
            cwd=ROOT,
            env=env | {"CIVIQUE_PORT": str(worker_port)},
            stdout=subprocess.DEVNULL,
        )
        finished = registered = 0
        while time.monotonic() - started < args.drain_within and finished < accepted:
            time.sleep(1)
            finished = asyncio.run(count(settings, "gateway", "requests"))
        drain_s = time.monotonic() - started
        time.sleep(3)  # a last look: anything beyond `accepted` would be a duplicate
        finished = asyncio.run(count(settings, "gateway", "requests"))
        registered = asyncio.run(count(settings, "volunteers", "email_index"))
    finally:
        for process in (front, worker):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)

    figures = {
        "accepted_per_s": spike["per_s"],
        "bare_per_s": bare["per_s"],
        "ratio": round(spike["per_s"] / bare["per_s"], 3),
        "p50_ms": spike["p50_ms"],
        "p99_ms": spike["p99_ms"],
        "bare_p50_ms": bare["p50_ms"],
        "bare_p99_ms": bare["p99_ms"],
        "accepted": accepted,
        "answered_202": spike["answered_202"],
        "refused": spike["failures"],
        "finished": finished,
        "registered": registered,
        "lost": max(0, accepted - registered) if finished >= accepted else None,  # None: the drain was cut short
        "duplicated": max(0, registered - accepted),
        "drained": finished >= accepted,
        "drain_s": round(drain_s, 1),
        "gateway_cpu_us": spike["server_cpu_us"],
        "bare_cpu_us": bare["server_cpu_us"],
        "broker_cpu_us": spike["broker_cpu_us"],
        "servers_run_on": {"gateway": front_parts, "bare": bare_parts},
        "users": args.users,
        "seconds": args.seconds,
        "machine": machine(),
    }
    if front_parts != bare_parts:
        raise SystemExit(f"the servers run on different parts: {figures['servers_run_on']}")
    print(json.dumps(figures, indent=2))
    if args.no_report:
        return
    (out / "spike.json").write_text(json.dumps(figures, indent=2) + "\n")
    write_section(section(figures))


if __name__ == "__main__":
    main()
