"""The delivery log's sender on the in-memory stores: e-mails handed over by the consumers leave without a
query, another process leaves them alone until their lease ends and never sends one twice, and the claims and
records of e-mails sent at once share round trips (`GroupCommit`), each writer still learning its own outcome."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from services.notifications.handlers import DELIVERIES, DeliveryLog, Letters, Notifications
from services.notifications.handlers.delivery import now
from services.notifications.handlers.group_commit import GroupCommit
from shared.events import VolunteerRegistered
from shared.runtime.batched import BatchedDocuments
from shared.runtime.mail import MAILBOX, MailboxMailer
from shared.runtime.memory import InMemoryDocumentStore, InMemoryEventStore
from shared.runtime.ports import DuplicateKeyError, Filter, Sort, Write
from shared.runtime.settings import Settings
from shared.runtime.vault import Vault
from tests.conftest import eventually


class Counted(InMemoryDocumentStore):
    """An in-memory store that counts its round trips, each a real suspension (as over a socket or a thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []
        self.listings = 0  # the sender's queries for e-mails due
        self.reads: list[str] = []

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self.reads.append(collection)
        return await super().get(collection, doc_id)

    async def write(self, writes: Sequence[Write]) -> None:
        self.writes.append(len(writes))
        await asyncio.sleep(0)
        await super().write(writes)

    async def find(
        self, collection: str, where: Filter | None = None, *, sort: Sort = (), limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        self.listings += collection == DELIVERIES and "next_attempt_at" in (where or {})
        return await super().find(collection, where, sort=sort, limit=limit, skip=skip)


class OrderedBulk(InMemoryDocumentStore):
    """As MongoDB's ordered bulk write: the writes before a failing one stay."""

    async def write(self, writes: Sequence[Write]) -> None:
        for w in writes:
            assert w.doc is not None
            await (self.insert if w.insert_only else self.put)(w.collection, w.doc_id, w.doc)


async def test_writes_made_at_once_share_a_round_trip():
    documents = Counted()
    grouped = GroupCommit(documents)
    await asyncio.gather(*(grouped.put("records", f"e{n}", {"n": n}) for n in range(5)))
    assert documents.writes == [1, 4]  # the first alone, the four that came while it was under way together
    assert [(await documents.get("records", f"e{n}")) for n in range(5)] == [{"n": n} for n in range(5)]


@pytest.mark.parametrize("store", [Counted, OrderedBulk])
async def test_an_insert_finding_its_id_taken_fails_alone(store: type[InMemoryDocumentStore]):
    documents = store()
    await documents.insert("claims", "taken", {"by": "another sender"})
    grouped = GroupCommit(documents)
    claims = [grouped.insert("claims", key, {"by": "me"}) for key in ("first", "taken", "last")]
    assert await asyncio.gather(*claims) == [True, False, True]
    assert [(await documents.get("claims", key))["by"] for key in ("first", "taken", "last")] == [
        "me",
        "another sender",
        "me",
    ]


async def test_a_failed_round_trip_fails_every_writer_in_it():
    class Failing(Counted):
        async def write(self, writes: Sequence[Write]) -> None:
            await super().write([])
            raise ConnectionError("store unreachable")

    grouped = GroupCommit(Failing())
    outcomes = await asyncio.gather(*(grouped.put("records", f"e{n}", {}) for n in range(3)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3


# ---- the sender ----


def delivery_log(settings: Settings, documents: InMemoryDocumentStore, keys: InMemoryDocumentStore) -> DeliveryLog:
    return DeliveryLog(BatchedDocuments(documents), settings, Vault(keys), MailboxMailer(documents), Letters())


def registered(volunteer_id: str, personal: Any) -> VolunteerRegistered:
    return VolunteerRegistered(
        volunteer_id=volunteer_id,
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


async def welcome(log: DeliveryLog, keys: InMemoryDocumentStore, volunteer_id: str) -> None:
    """A volunteer registers: the notifications service projects them and queues their welcome e-mail."""
    notifications = Notifications(log.documents, InMemoryEventStore(), log.settings, log)
    personal = await Vault(keys).seal(volunteer_id, {"first_name": "Camille", "email": f"{volunteer_id}@example.fr"})
    event = registered(volunteer_id, personal)
    await notifications.on_event(event, event.envelope(1))


async def mailbox(documents: InMemoryDocumentStore) -> list[Mapping[str, Any]]:
    return await documents.find(MAILBOX)


async def test_emails_handed_over_leave_without_a_query():
    settings = Settings(link_secret="unit", mail_send_interval_s=3600.0)
    documents, keys = Counted(), InMemoryDocumentStore()
    log = delivery_log(settings, documents, keys)
    sender = asyncio.create_task(log.send_continuously())
    try:
        await eventually(lambda: _listed(documents, 1), within=5, what="the sender's first look at the log")
        for n in range(3):
            await welcome(log, keys, f"volunteer-{n}")

        async def all_sent() -> bool:
            return len(await documents.find(DELIVERIES, {"status": "sent"})) == 3

        await eventually(all_sent, within=5, what="the three welcomes sent")
        assert len(await mailbox(documents)) == 3
        assert documents.listings == 1  # its first look at the log, at start
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def _listed(documents: Counted, n: int) -> bool:
    return documents.listings >= n


async def test_another_process_leaves_a_handed_over_email_alone_until_its_lease_ends_and_never_sends_it_twice():
    settings = Settings(link_secret="unit", mail_send_interval_s=1.0)
    documents, keys = InMemoryDocumentStore(), InMemoryDocumentStore()
    writer, other = delivery_log(settings, documents, keys), delivery_log(settings, documents, keys)
    await welcome(writer, keys, "volunteer-1")  # handed over to `writer`'s sender, which does not run
    assert await other.send_due(now()) == 0  # leased to its writer
    assert await other.send_due(now() + timedelta(seconds=3)) == 1  # the writer died, or sends too slowly
    assert [d["status"] for d in await documents.find(DELIVERIES)] == ["sent"]
    assert await writer.send_due() == 1  # the writer's sender comes back to it: the claim is taken
    assert len(await mailbox(documents)) == 1


async def test_a_claim_insert_finding_its_id_taken_leaves_the_email_to_its_sender():
    settings = Settings(link_secret="unit")
    documents, keys = InMemoryDocumentStore(), InMemoryDocumentStore()
    log = delivery_log(settings, documents, keys)
    await welcome(log, keys, "volunteer-1")
    (queued,) = await documents.find(DELIVERIES)
    await documents.insert("delivery_claims", queued["id"], {"claimed_at": now().isoformat(), "by": "another"})
    assert await log.send_due() == 1
    assert [d["status"] for d in await documents.find(DELIVERIES)] == ["queued"]  # its sender is on it
    assert await mailbox(documents) == []
    with pytest.raises(DuplicateKeyError):  # nothing of ours replaced it
        await documents.insert("delivery_claims", queued["id"], {})
    assert (await documents.get("delivery_claims", queued["id"]) or {})["by"] == "another"


async def test_a_welcome_goes_with_the_person_just_projected_and_an_erasure_still_stops_it():
    settings = Settings(link_secret="unit")
    documents, keys = Counted(), InMemoryDocumentStore()
    log = delivery_log(settings, documents, keys)
    await welcome(log, keys, "volunteer-1")
    await welcome(log, keys, "volunteer-2")
    await Vault(keys).forget("volunteer-2")  # erased between the welcome's queueing and its sending
    documents.reads.clear()
    assert await log.send_due() == 2
    assert "people" not in documents.reads  # the recipients came with their e-mails; their keys are read
    statuses = {d["recipient_id"]: d["status"] for d in await documents.find(DELIVERIES)}
    assert statuses == {"volunteer-1": "sent", "volunteer-2": "skipped"}
    assert [m["to"] for m in await mailbox(documents)] == ["Camille <volunteer-1@example.fr>"]
