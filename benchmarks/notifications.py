"""Notifications benchmark: how fast welcome e-mails leave for a real SMTP server, delivery log included.

python benchmarks/notifications.py [--emails 1000] [--backends embedded kafka+mongo]
An aiosmtpd server (its own process, discarding what it receives) takes the e-mails. The notifications
service alone, with its production settings, consumes N VolunteerRegistered events and sends N welcome
e-mails, each written to the delivery log, rendered, claimed and marked sent; the clock stops when the
last one is marked sent (the service's own counter, `civique_mail_sent_total`, then the log checked once).
Baseline, same run: the same rendered e-mails sent straight with aiosmtplib (`send_message` of an
`EmailMessage`) over the same number of connections kept open (CIVIQUE_SMTP_CONNECTIONS); and the transport
alone: the same e-mails composed beforehand, their bytes sent with `sendmail`. Writes
docs/benchmarks/notifications.json and the notifications section of docs/benchmarks.md.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from benchmarks.spike import free_port, machine  # noqa: E402
from services.notifications import service  # noqa: E402
from services.notifications.handlers import DELIVERIES, Letters  # noqa: E402
from services.notifications.handlers.delivery import SENT  # noqa: E402
from shared.events import VolunteerRegistered  # noqa: E402
from shared.runtime.app import Runtime  # noqa: E402
from shared.runtime.backend import database_name  # noqa: E402
from shared.runtime.mail import compose_mail  # noqa: E402
from shared.runtime.ports import OutgoingMessage  # noqa: E402
from shared.runtime.settings import Settings  # noqa: E402
from shared.runtime.vault import Vault  # noqa: E402


def smtp_sink(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def through_the_service(settings: Settings, emails: int) -> float:
    runtime = Runtime(settings, [service])
    await runtime.start()
    try:
        ctx = runtime.context("notifications")
        vault = Vault(ctx.keys)
        events = []
        for n in range(emails):
            volunteer = f"v{n}"
            personal = await vault.seal(volunteer, {"first_name": "Camille", "email": f"benevole{n}@example.fr"})
            registered = VolunteerRegistered(
                volunteer_id=volunteer,
                personal=personal,
                postal_code="56000",
                department="56",
                age_bracket="25-34",
                domains=["food_and_emergency_aid"],
                availability=["weekends"],
                mode="both",
                max_distance_km=20,
                onsite_restricted=False,
                visible_to_organizations=True,
            )
            events.append(OutgoingMessage.of(registered.envelope(1)))
        before = sent_so_far()
        started = time.perf_counter()
        await runtime.bus.publish(events)
        # polled as an operator reads /metrics: no query on the delivery log meanwhile
        while sent_so_far() - before < emails:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        recorded = await ctx.documents.count(DELIVERIES, {"status": "sent"})
        if recorded != emails:
            raise RuntimeError(f"{recorded} e-mails recorded sent, {emails} counted")
        return elapsed
    finally:
        await runtime.stop()


def sent_so_far() -> float:
    """Welcome e-mails the service counted sent: it counts one once its log records it sent."""
    return sum(
        sample.value
        for metric in SENT.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("template") == "volunteer_welcome"
    )


def rendered(settings: Settings) -> tuple[str, str, str]:
    context = {"first_name": "Camille", "public_url": settings.public_url, "unsubscribe_url": None}
    return Letters().render("volunteer_welcome", context)


async def over_open_connections(settings: Settings, emails: int, send: Any) -> float:
    """`send(client, n)` for every n, over as many connections kept open as the service may hold, in parallel."""
    numbers = iter(range(emails))

    async def one_connection() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.smtp_port, start_tls=False) as client:
            for n in numbers:
                await send(client, n)

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(settings.smtp_connections)))
    return time.perf_counter() - started


async def straight(settings: Settings, emails: int) -> float:
    """The same rendered e-mails sent with bare aiosmtplib, each an `EmailMessage`: the baseline of issue 14."""
    subject, text, html = rendered(settings)

    async def send(client: aiosmtplib.SMTP, n: int) -> None:
        message = EmailMessage()
        message["From"], message["To"] = settings.mail_from, f"benevole{n}@example.fr"
        message["Subject"] = subject
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        await client.send_message(message)

    return await over_open_connections(settings, emails, send)


async def transport_alone(settings: Settings, emails: int) -> float:
    """The same e-mails composed beforehand, their bytes sent with `sendmail`: the transport's ceiling."""
    subject, text, html = rendered(settings)
    mails = [
        compose_mail(
            sender=settings.mail_from,
            recipient=f"benevole{n}@example.fr",
            recipient_name="Camille",
            subject=subject,
            text=text,
            html=html,
            message_id=f"bare{n}@civique",
        )
        for n in range(emails)
    ]

    async def send(client: aiosmtplib.SMTP, n: int) -> None:
        await client.sendmail(mails[n].sender, [mails[n].recipient], mails[n].content)

    return await over_open_connections(settings, emails, send)


async def drop_what_the_run_created(settings: Settings) -> None:
    """Its topics and databases go: the servers of scripts/infra outlive the run (a broker holds a file per
    partition, FerretDB on SQLite a file per database)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(settings.namespace)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    try:
        for storage in ("notifications", "keys"):
            await client.drop_database(database_name(settings, storage))
    finally:
        await client.close()


async def measure(backend: str, emails: int, port: int) -> dict:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            backend=backend,
            data_dir=Path(data),
            namespace=f"bench{uuid.uuid4().hex[:8]}_",
            smtp_host="127.0.0.1",
            smtp_port=port,
            link_secret="benchmark",
            log_level="warning",
        )
        try:
            baseline = await straight(settings, emails)
            transport = await transport_alone(settings, emails)
            measured = await through_the_service(settings, emails)
        finally:
            if backend == "kafka+mongo":
                try:
                    await drop_what_the_run_created(settings)
                except Exception as exc:  # the figures, or the error that stopped the run, matter more
                    print(f"could not drop the run's topics and databases: {exc!r}", file=sys.stderr)
    rate, bare, ceiling = emails / measured, emails / baseline, emails / transport
    return {
        "backend": backend,
        "emails": emails,
        "service_seconds": round(measured, 2),
        "service_per_second": round(rate, 1),
        "baseline_seconds": round(baseline, 2),
        "baseline_per_second": round(bare, 1),
        "ratio": round(rate / bare, 2),
        "transport_per_second": round(ceiling, 1),
        "ratio_to_transport": round(rate / ceiling, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--backends", nargs="+", choices=["embedded", "kafka+mongo"], default=["embedded"])
    args = parser.parse_args()
    port = free_port()
    sink = smtp_sink(port)
    try:
        await wait_for_port(port)
        runs = [await measure(backend, args.emails, port) for backend in args.backends]
    finally:
        sink.terminate()
        sink.wait()
    figures = {"machine": machine(), "runs": runs}
    print(json.dumps(figures, indent=2))
    (ROOT / "docs" / "benchmarks" / "notifications.json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = "".join(
        f"| {r['backend']}: e-mails per second, event to SMTP 250 ({r['emails']:,} e-mails) "
        f"| {r['service_per_second']:,.1f} | {r['baseline_per_second']:,.1f} | {r['ratio']:.2f} |\n"
        f"| {r['backend']}: the same against the transport alone (e-mails composed beforehand) "
        f"| {r['service_per_second']:,.1f} | {r['transport_per_second']:,.1f} | {r['ratio_to_transport']:.2f} |\n"
        for r in runs
    )
    write_section(
        "## Notifications: e-mails to a real SMTP server (benchmarks/notifications.py)\n\n"
        f"Machine: {machine()}. VolunteerRegistered events consumed by the notifications service alone\n"
        "(production settings), each becoming a welcome e-mail written to the delivery log, handed to the\n"
        "sender, rendered (French, text + HTML), claimed between the envelope and the content, sent to an\n"
        "aiosmtpd server in its own process, and marked sent. Baseline, same run (issue 14): the same\n"
        "rendered e-mails sent straight with aiosmtplib (`send_message` of an `EmailMessage`) over as many\n"
        "connections kept open as the service holds (4), in parallel; the transport alone sends the same\n"
        "e-mails' bytes, composed beforehand, the same way. Kafka and FerretDB from scripts/infra share the cores.\n\n"
        "| figure | value | baseline | ratio |\n|---|---|---|---|\n"
        + rows
        + "\nPer e-mail the sender reads the recipient's key (a welcome comes with the recipient just projected),\n"
        "inserts its claim and rewrites its record, all by `_id` (the claims and records of e-mails leaving at\n"
        "once in one round trip); the consumer inserts the e-mail and hands it to the sender in memory, so no\n"
        "query lists the log on the way (it is listed once every `mail_send_interval_s` for retries and\n"
        "other processes' leftovers). MIME is written from pre-encoded parts (ADR 0007, issue 14).\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
