"""The delivery log and its sender: every e-mail is one document, written before anything is sent and keyed by
its event or period, recipient and message (`domain.delivery_key`), so a redelivered event adds nothing.

The sender claims an e-mail (a unique insert in `delivery_claims`, kept once sent) once the SMTP server
accepted its recipient and before the content goes, and marks it sent after: a crash in between leaves a
claim on a queued e-mail, which is reported unconfirmed once the claim outlived `mail_unconfirmed_after_s`,
never sent twice (ADR 0007). The claim is the only gate of a send: an e-mail goes as the sender got it
(handed over in memory by the consumer that wrote it, or listed from the log) without being read again, and
every other outcome (held, skipped, retried, dead) is decided on a fresh read and only while no claim holds
it. Claims and records of the e-mails sent at once share round trips (`GroupCommit`).
"""

import asyncio
import contextlib
import math
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from services.notifications import domain, projections
from services.notifications.domain import Notice
from services.notifications.handlers.group_commit import GroupCommit
from services.notifications.handlers.letters import Letters
from services.notifications.projections import MISSIONS, ORGANIZATIONS
from shared.contracts.notifications import Failure, FailureStatus, Unsubscribable
from shared.events.vocabulary import Sealed
from shared.runtime.batched import BatchedDocuments
from shared.runtime.mail import (
    ComposedMail,
    Mailer,
    MailMayHaveLeft,
    PermanentMailFailure,
    TemporaryMailFailure,
    UnwritableAddress,
    check_sender,
    compose_mail,
)
from shared.runtime.ports import DuplicateKeyError
from shared.runtime.settings import Settings
from shared.runtime.vault import Vault

log = structlog.get_logger("civique.notifications")

DELIVERIES, CLAIMS, PREFERENCES = "deliveries", "delivery_claims", "preferences"
SENT = Counter("civique_mail_sent_total", "E-mails accepted by the SMTP server, by message", ["template"])
HELD = Counter("civique_mail_held_total", "E-mails held for the next digest, by message", ["template"])
DEAD = Counter("civique_mail_dead_letters_total", "E-mails given up, by reason", ["reason"])
UNCONFIRMED = Counter("civique_mail_unconfirmed_total", "E-mails that may have left unrecorded, by reason", ["reason"])
SEND_BATCH = 100
PREPARED_PER_CONNECTION = 4
HANDOVER_LIMIT = 10_000  # e-mails waiting in memory for this process's sender; beyond, the listing finds them
SETTLED = ("sent", "digested", "opted_out", "skipped", "dead", "unconfirmed")  # held and queued wait on


InHand = tuple[dict[str, Any], dict[str, Any] | None]  # an e-mail in a sender's hand, and its recipient if known


def now() -> datetime:
    return datetime.now(UTC)


class NotReady(Exception):
    """What an e-mail speaks of is not known here yet (its topic lags): try again a little later."""


class Outdated(Exception):
    """What an e-mail offers is gone (a reset link used or expired before it left): it is not sent."""


class DeliveryLog:
    """Built once at start by the service's composition root: `vault` opens the sealed contact details (the
    platform's key store), `mailer` sends (SMTP, or the local mailbox of embedded runs)."""

    def __init__(
        self, documents: BatchedDocuments, settings: Settings, vault: Vault, mailer: Mailer, letters: Letters
    ) -> None:
        self.documents, self.settings = documents, settings
        self.link_secret = settings.secret("link_secret")
        check_sender(settings.mail_from)
        self.vault, self.mailer, self.letters = vault, mailer, letters
        self.claims, self.records = GroupCommit(documents), GroupCommit(documents)
        self._claimed_elsewhere: dict[str, datetime] = {}  # e-mails another sender claimed: when it was seen
        # e-mails this process queued, oldest first: its sender takes them from here, without a query
        self._handed_over: dict[str, dict[str, Any]] = {}
        self._recipients: dict[str, dict[str, Any]] = {}  # of handed-over e-mails: their recipient, as projected
        self._in_hand: set[str] = set()  # e-mails a sender of this process is on, so that no other takes them
        self._chains: dict[str, deque[InHand]] = {}  # per recipient: their e-mails in hand, in order
        # e-mails prepared at once (reads, letter): more than connections, so that store latency overlaps SMTP
        self._preparing = asyncio.Semaphore(PREPARED_PER_CONNECTION * settings.smtp_connections)
        self._wake = asyncio.Event()  # an e-mail handed over, or one done with

    async def enqueue(
        self, notice: Notice, *, status: str | None = None, recipient: dict[str, Any] | None = None, **fields: Any
    ) -> bool:
        """Write one e-mail into the delivery log; False when it is there already (a redelivery; inside a consumer's
        batch, which writes it later, the batch is redone then). `recipient`: their document as the caller just
        projected it, which the sender then does not read again."""
        if status is None and notice.category == "transactional":
            status = "queued"  # whatever the preferences: not worth reading them
        if status is None:
            preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, notice.recipient_id))
            status = domain.status_on_arrival(notice.category, preferences)
        moment = now()
        handing_over = status == "queued" and len(self._handed_over) < HANDOVER_LIMIT
        due = moment + self._lease() if handing_over else moment
        delivery = {
            "id": notice.key,
            "template": notice.template,
            "category": notice.category,
            "recipient_id": notice.recipient_id,
            "source": notice.source,
            "facts": notice.facts,
            "status": status,
            "attempts": 0,
            "created_at": moment.isoformat(),
            "next_attempt_at": due.isoformat(),
            **fields,
        }

        def written() -> None:  # handed over once in the log: a sender's "sent" must find it there
            if status == "held":
                HELD.labels(notice.template).inc()
            if handing_over:
                self._handed_over[notice.key] = delivery
                if recipient is not None:
                    self._recipients[notice.key] = recipient
                self._wake.set()

        try:
            # with a consumer's batch, in its one write: a redelivered e-mail there makes the runner redo the
            # batch one event at a time, where this raises
            await self.documents.add(DELIVERIES, notice.key, delivery, then=written)
        except DuplicateKeyError:
            return False
        return True

    def _lease(self) -> timedelta:
        """How long the senders' listings leave a handed-over e-mail to this process: about the time its queue
        takes to drain, after which any sender may take it (this process died, or sends too slowly)."""
        rounds = 2 + len(self._handed_over) / SEND_BATCH
        return timedelta(seconds=self.settings.mail_send_interval_s * rounds)

    async def send_continuously(self) -> None:
        """The sender: e-mails as this process's consumers hand them over, and every `mail_send_interval_s` (at
        once again after a full listing) what else the log holds due; up to `SEND_BATCH` in hand, each leaving
        as soon as a connection is free rather than in rounds."""
        interval, listed_at, more = self.settings.mail_send_interval_s, -math.inf, False
        async with asyncio.TaskGroup() as sending:
            while True:
                self._wake.clear()
                while self._handed_over and len(self._in_hand) < SEND_BATCH:
                    self._dispatch(sending, *self._take_handed_over())
                if len(self._in_hand) < SEND_BATCH and (more or time.monotonic() - listed_at >= interval):
                    listed_at = time.monotonic()
                    try:
                        listed, more = await self._due_in_log(now())
                    except Exception:
                        log.exception("send_failed")
                        listed, more = [], False
                    for delivery in listed:
                        self._dispatch(sending, delivery)
                if more and len(self._in_hand) < SEND_BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if more else max(0.0, listed_at + interval - time.monotonic())):
                        await self._wake.wait()

    async def send_due(self, moment: datetime | None = None) -> int:
        """Deliver at once what is due, handed over or in the log, beside the sender (which leaves alone what
        this call took); how many e-mails were looked at."""
        moment = moment or now()
        due = [self._take_handed_over() for _ in range(min(SEND_BATCH, len(self._handed_over)))]
        if len(due) < SEND_BATCH:
            taken = {d["id"] for d, _ in due}
            listed = [d for d in (await self._due_in_log(moment))[0] if d["id"] not in taken]
            due += [(d, None) for d in listed[: SEND_BATCH - len(due)]]
        async with asyncio.TaskGroup() as sending:
            for delivery, recipient in due:
                self._dispatch(sending, delivery, recipient, moment)
        return len(due)

    def _take_handed_over(self) -> InHand:
        key = next(iter(self._handed_over))
        return self._handed_over.pop(key), self._recipients.pop(key, None)

    async def _due_in_log(self, moment: datetime) -> tuple[list[dict[str, Any]], bool]:
        """The queued e-mails of the log whose time has come, that no sender of this process holds; whether
        there may be more. Retries, another process's e-mails, a dead process's: rarely many."""
        remembered = timedelta(seconds=2 * self.settings.mail_unconfirmed_after_s)
        self._claimed_elsewhere = {k: t for k, t in self._claimed_elsewhere.items() if moment - t <= remembered}
        listed = await self.documents.find(
            DELIVERIES,
            {"status": "queued", "next_attempt_at": {"$lte": moment.isoformat()}},
            sort=[("next_attempt_at", 1)],
            limit=SEND_BATCH,
        )
        due = [d for d in listed if d["id"] not in self._in_hand and d["id"] not in self._handed_over]
        return due, len(listed) >= SEND_BATCH and bool(due)

    def _dispatch(
        self,
        sending: asyncio.TaskGroup,
        delivery: dict[str, Any],
        recipient: dict[str, Any] | None = None,
        moment: datetime | None = None,
    ) -> None:
        """In hand: behind the recipient's e-mails in hand already (their hourly limit counts what left), or
        on its own way; recipients at once, as many as there are connections."""
        self._in_hand.add(delivery["id"])
        chain = self._chains.get(delivery["recipient_id"])
        if chain is not None:
            chain.append((delivery, recipient))
        else:
            self._chains[delivery["recipient_id"]] = deque([(delivery, recipient)])
            sending.create_task(self._deliver_in_turn(delivery["recipient_id"], moment))

    async def _deliver_in_turn(self, recipient_id: str, moment: datetime | None) -> None:
        chain = self._chains[recipient_id]
        try:
            while chain:
                delivery, recipient = chain[0]
                try:
                    async with self._preparing:  # the mailer lets as many through at once as it has connections
                        await self.deliver(delivery, moment or now(), recipient=recipient)
                except Exception:  # one e-mail's fault: it stays queued, the others go
                    log.exception("send_failed", delivery=delivery["id"])
                chain.popleft()
                self._in_hand.discard(delivery["id"])
                self._wake.set()
        finally:  # cancelled too: what is left stays queued in the log, for the next listing
            del self._chains[recipient_id]
            self._in_hand.difference_update(d["id"] for d, _ in chain)

    async def deliver(
        self, listed: dict[str, Any], moment: datetime, *, recipient: dict[str, Any] | None = None
    ) -> None:
        """Send one e-mail as the sender got it: its claim, not a second read, keeps it from leaving twice.
        `recipient`: their document as projected when the e-mail was queued (an erasure shreds their key,
        which is read here in any case)."""
        key = listed["id"]
        seen = self._claimed_elsewhere.get(key)
        if seen is not None and moment - seen <= timedelta(seconds=self.settings.mail_unconfirmed_after_s):
            return  # its claim is another sender's, and young: nothing to ask the store again yet
        person = recipient or await projections.person(self.documents, listed["recipient_id"]) or {}
        sealed = person.get("contact")
        contact = await self.vault.open(Sealed(**sealed)) if sealed else None
        if person.get("erased") or (sealed and contact is None):  # erased here, or its key shredded
            await self._settle(listed, moment, "skipped", reason="recipient_erased")
            return
        category = listed["category"]
        if category != "transactional":
            preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, listed["recipient_id"]))
            if category in preferences.unsubscribed:
                await self._settle(listed, moment, "opted_out")
                return
            if listed["template"] != "digest" and domain.over_hourly_limit(
                category,
                await self._sent_in_last_hour(listed["recipient_id"], moment),
                self.settings.mail_hourly_limit,
            ):
                if await self._settle(listed, moment, "held", reason="throttled"):
                    HELD.labels(listed["template"]).inc()
                return
        try:
            if contact is None:
                raise NotReady("recipient not known yet")
            context = await self.context_for(listed, contact)
        except NotReady as waiting:
            return await self._wait(listed, moment, str(waiting))
        except Outdated as outdated:
            await self._settle(listed, moment, "skipped", reason=str(outdated))
            return
        claimed = False

        async def commit() -> bool:
            nonlocal claimed
            claim = {"claimed_at": now().isoformat(), "by": uuid.uuid4().hex}  # "by": which sender's claim it is
            claimed = await self.claims.insert(CLAIMS, key, claim)
            return claimed  # False: another sender has it

        try:
            sent = await self.mailer.send(self.compose(listed, contact, context), commit=commit)
        except TemporaryMailFailure as failure:
            return await self._retry(listed, moment, str(failure), claimed=claimed)
        except PermanentMailFailure as failure:
            reason = "address_unwritable" if isinstance(failure, UnwritableAddress) else "smtp_refused"
            return await self._give_up(listed, moment, str(failure), reason, claimed=claimed)
        except MailMayHaveLeft as failure:  # our claim stays: reported, never repeated (ADR 0007)
            await self.finish(listed, "unconfirmed", reason=f"no_answer_to_content: {failure}")
            UNCONFIRMED.labels("no_answer_to_content").inc()
            log.warning("mail_unconfirmed", delivery=key, template=listed["template"], error=str(failure))
            return
        if not sent:
            await self._settle(listed, moment, None)  # unconfirmed if its claim is stale, else left to its sender
            return
        # the claim stays: a sender holding a stale copy of this e-mail cannot claim it again
        recording = asyncio.create_task(
            self.records.put(DELIVERIES, key, {**listed, "status": "sent", "sent_at": now().isoformat()})
        )
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:  # stopping: what left is recorded first, or it would be reported unconfirmed
            await recording
            raise
        SENT.labels(listed["template"]).inc()

    async def _settle(self, listed: dict[str, Any], moment: datetime, status: str | None, **fields: Any) -> bool:
        """Give a queued e-mail an outcome other than sent, from a fresh read and only while no claim holds it
        (it may be leaving, or have left before a crash); whether it was given. None: only look at the claim.

        A claim older than `mail_unconfirmed_after_s` is a sender interrupted after it: the e-mail may have left,
        so it is marked unconfirmed, reported, never repeated (ADR 0007)."""
        current = await self._unclaimed(listed, moment)
        if current is None or status is None:
            return False
        await self.finish(current, status, **fields)
        return True

    async def _unclaimed(self, listed: dict[str, Any], moment: datetime) -> dict[str, Any] | None:
        """The e-mail as it is now, if it is still queued and no sender holds its claim."""
        key = listed["id"]
        claim = await self.documents.get(CLAIMS, key)
        current = await self.documents.get(DELIVERIES, key)
        if current is None or current["status"] != "queued":
            self._claimed_elsewhere.pop(key, None)
            return None  # another sender settled it since it was listed
        if claim is None:
            self._claimed_elsewhere.pop(key, None)
            return current
        claimed = datetime.fromisoformat(claim["claimed_at"])
        if moment - claimed > timedelta(seconds=self.settings.mail_unconfirmed_after_s):
            self._claimed_elsewhere.pop(key, None)
            await self.finish(current, "unconfirmed", reason="interrupted_after_claim")
            UNCONFIRMED.labels("interrupted_after_claim").inc()
            log.warning("mail_unconfirmed", delivery=key, template=current["template"])
        else:
            self._claimed_elsewhere[key] = claimed
        return None

    async def _retry(self, listed: dict[str, Any], moment: datetime, reason: str, *, claimed: bool) -> None:
        """After a temporary failure: again later (backoff), or dead past `mail_max_attempts`."""
        if claimed:  # ours, and nothing left: released for the next attempt
            await self.documents.delete(CLAIMS, listed["id"])
        delivery = await self._unclaimed(listed, moment)
        if delivery is None:
            return
        attempts = delivery["attempts"] + 1
        if attempts >= self.settings.mail_max_attempts:
            DEAD.labels("smtp_unavailable").inc()
            return await self.finish(delivery, "dead", reason=reason, attempts=attempts)
        retry = domain.retry_at(moment, attempts, self.settings.mail_retry_base_s)
        await self.finish(delivery, "queued", reason=reason, attempts=attempts, next_attempt_at=retry.isoformat())

    async def _give_up(
        self, listed: dict[str, Any], moment: datetime, reason: str, kind: str, *, claimed: bool
    ) -> None:
        """After a refusal (5xx, an address no e-mail can carry): dead, unless another sender's claim holds it."""
        if claimed:
            await self.documents.delete(CLAIMS, listed["id"])
        if await self._settle(listed, moment, "dead", reason=reason):
            DEAD.labels(kind).inc()

    async def _sent_in_last_hour(self, recipient_id: str, moment: datetime) -> int:
        # by equality only (an index lookup on FerretDB too): the range and the category are checked here
        since = (moment - timedelta(hours=1)).isoformat()
        sent = await self.documents.find(DELIVERIES, {"recipient_id": recipient_id, "status": "sent"})
        return sum(1 for d in sent if d["category"] != "transactional" and d.get("sent_at", "") >= since)

    async def finish(self, delivery: dict[str, Any], status: str, **fields: Any) -> None:
        await self.documents.put(DELIVERIES, delivery["id"], {**delivery, "status": status, **fields})

    async def _wait(self, listed: dict[str, Any], moment: datetime, reason: str) -> None:
        """What the e-mail speaks of is not known yet: again a little later, dead past `mail_recipient_wait_s`."""
        created = datetime.fromisoformat(listed["created_at"])
        if moment - created > timedelta(seconds=self.settings.mail_recipient_wait_s):
            if await self._settle(listed, moment, "dead", reason=reason):
                DEAD.labels("never_known").inc()
            return
        retry = moment + timedelta(seconds=min(60.0, self.settings.mail_retry_base_s))
        await self._settle(listed, moment, "queued", reason=reason, next_attempt_at=retry.isoformat())

    def compose(self, delivery: dict[str, Any], contact: dict[str, Any], context: dict[str, Any]) -> ComposedMail:
        """The e-mail's bytes; PermanentMailFailure when its address cannot be written in one."""
        subject, text, html = self.letters.render(delivery["template"], context)
        headers = []
        if context.get("unsubscribe_url"):
            headers = [
                ("List-Unsubscribe", f"<{context['unsubscribe_url']}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ]
        return compose_mail(
            sender=self.settings.mail_from,
            recipient=contact["email"],
            recipient_name=contact.get("first_name"),
            subject=subject,
            text=text,
            html=html,
            message_id=f"{delivery['id']}@civique",  # the same e-mail always has the same id
            headers=headers,
        )

    async def context_for(self, delivery: dict[str, Any], contact: dict[str, Any]) -> dict[str, Any]:
        """What the template of an e-mail reads: its facts, the public facts they name, links."""
        facts, base = delivery["facts"], self.settings.public_url.rstrip("/")
        context: dict[str, Any] = {**facts, "first_name": contact.get("first_name"), "public_url": base}
        category = delivery["category"]
        context["unsubscribe_url"] = (
            f"{base}/api/v1/notifications/unsubscribe?token="
            + domain.unsubscribe_token(self.link_secret, delivery["recipient_id"], self._unsubscribes(delivery))
            if category != "transactional"
            else None
        )
        if "mission_id" in facts:
            context["mission"] = await self._known(MISSIONS, facts["mission_id"])
            context["mission_url"] = f"{base}/missions/{facts['mission_id']}"
        organization_id = facts.get("organization_id") or (context.get("mission") or {}).get("organization_id")
        if organization_id:
            context["organization"] = await self._known(ORGANIZATIONS, organization_id)
        match delivery["template"]:
            case "referent_invitation":
                context["invitation_url"] = f"{base}/referents/invitation?token={contact['token']}"
            case "password_reset":  # its key is shredded once the link has served
                token = (await self.vault.open(Sealed(**facts["reset"])) or {}).get("token")
                if token is None:
                    raise Outdated("reset_link_used")
                context["reset_url"] = f"{base}/mot-de-passe/nouveau?token={token}"
            case "application_accepted":
                context["contacts"] = await self._manager_addresses(organization_id)
            case "idle_digest":
                found = [await self.documents.get(MISSIONS, m) for m in facts["mission_ids"]]
                context["missions"] = [
                    {**m, "url": f"{base}/missions/{m['id']}"} for m in found if m and m.get("title")
                ]
            case "digest":
                context["items"] = await self._digest_items(facts["items"], contact)
        return context

    def _unsubscribes(self, delivery: dict[str, Any]) -> Unsubscribable:
        """The category a link in this e-mail unsubscribes from (a digest: what it gathers)."""
        if delivery["template"] == "digest":
            named = delivery["facts"].get("gathers", "activity")
        else:
            named = delivery["category"]
        return "news" if named == "news" else "activity"

    async def _known(self, collection: str, doc_id: str) -> dict[str, Any]:
        found = await self.documents.get(collection, doc_id)
        if not found or ("title" not in found and "name" not in found):
            raise NotReady(f"{collection} {doc_id} not known yet")
        return found

    async def _manager_addresses(self, organization_id: str | None) -> list[str]:
        """The organisation's managers' e-mails, told to an accepted volunteer (DOMAIN.md: with contact details)."""
        addresses = []
        for manager_id in await projections.managers_of(self.documents, organization_id or ""):
            manager = await projections.person(self.documents, manager_id)
            opened = await self.vault.open(Sealed(**manager["contact"])) if manager and manager.get("contact") else None
            if opened:
                addresses.append(opened["email"])
        return addresses

    async def _digest_items(self, keys: list[str], contact: dict[str, Any]) -> list[dict[str, Any]]:
        items = []
        for key in keys:
            item = await self.documents.get(DELIVERIES, key)
            if item is None:
                continue
            with contextlib.suppress(NotReady):
                context = await self.context_for(item, contact)
                items.append(
                    {"subject": self.letters.subject(item["template"], context), "url": context.get("mission_url")}
                )
        return items

    async def forget_settled(self, moment: datetime) -> int:
        """Keep the log bounded: e-mails settled before the retention go, with their claims."""
        cutoff = (moment - timedelta(days=self.settings.mail_log_retention_days)).isoformat()
        old = await self.documents.find(
            DELIVERIES, {"status": {"$in": list(SETTLED)}, "created_at": {"$lt": cutoff}}, limit=10_000
        )
        for delivery in old:
            await self.documents.delete(CLAIMS, delivery["id"])
            await self.documents.delete(DELIVERIES, delivery["id"])
        return len(old)

    async def failures(self, status: FailureStatus, limit: int) -> list[Failure]:
        """Dead or unconfirmed e-mails for the operators: which message, why; no address."""
        found = await self.documents.find(DELIVERIES, {"status": status}, sort=[("created_at", -1)], limit=limit)
        fields = ("template", "recipient_id", "source", "attempts", "reason", "created_at")
        return [Failure.model_validate({"id": d["id"], **{f: d.get(f) for f in fields}}) for d in found]
