"""The delivery log and its sender: every e-mail is one document, written before anything is sent and keyed by
its event or period, recipient and message (`domain.delivery_key`), so a redelivered event adds nothing.

The sender claims an e-mail (a unique insert in `delivery_claims`, kept once sent) once the SMTP server
accepted its recipient and before the content goes, and marks it sent after: a crash in between leaves a
claim on a queued e-mail, which is reported unconfirmed once the claim outlived `mail_unconfirmed_after_s`,
never sent twice (ADR 0007).
"""

import asyncio
import contextlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import structlog
from prometheus_client import Counter

from services.notifications import domain, projections
from services.notifications.domain import Notice
from services.notifications.handlers.letters import Letters
from services.notifications.projections import MISSIONS, ORGANIZATIONS
from shared.contracts.notifications import Failure, FailureStatus, Unsubscribable
from shared.events.vocabulary import Sealed
from shared.runtime.mail import Mailer, PermanentMailFailure, TemporaryMailFailure
from shared.runtime.ports import DocumentStore, DuplicateKeyError
from shared.runtime.settings import Settings
from shared.runtime.vault import Vault

log = structlog.get_logger("civique.notifications")

DELIVERIES, CLAIMS, PREFERENCES = "deliveries", "delivery_claims", "preferences"
SENT = Counter("civique_mail_sent_total", "E-mails accepted by the SMTP server, by message", ["template"])
HELD = Counter("civique_mail_held_total", "E-mails held for the next digest, by message", ["template"])
DEAD = Counter("civique_mail_dead_letters_total", "E-mails given up, by reason", ["reason"])
SEND_BATCH = 100
SETTLED = ("sent", "digested", "opted_out", "skipped", "dead", "unconfirmed")  # held and queued wait on


def now() -> datetime:
    return datetime.now(UTC)


class NotReady(Exception):
    """What an e-mail speaks of is not known here yet (its topic lags): try again a little later."""


class DeliveryLog:
    """Built once at start by the service's composition root: `vault` opens the sealed contact details (the
    platform's key store), `mailer` sends (SMTP, or the local mailbox of embedded runs)."""

    def __init__(
        self, documents: DocumentStore, settings: Settings, vault: Vault, mailer: Mailer, letters: Letters
    ) -> None:
        self.documents, self.settings = documents, settings
        self.link_secret = settings.secret("link_secret")
        self.vault, self.mailer, self.letters = vault, mailer, letters

    async def enqueue(self, notice: Notice, *, status: str | None = None, **fields: Any) -> bool:
        """Write one e-mail into the delivery log; False when it is there already (a redelivery)."""
        if status is None:
            preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, notice.recipient_id))
            status = domain.status_on_arrival(notice.category, preferences)
        moment = now().isoformat()
        try:
            await self.documents.insert(
                DELIVERIES,
                notice.key,
                {
                    "id": notice.key,
                    "template": notice.template,
                    "category": notice.category,
                    "recipient_id": notice.recipient_id,
                    "source": notice.source,
                    "facts": notice.facts,
                    "status": status,
                    "attempts": 0,
                    "created_at": moment,
                    "next_attempt_at": moment,
                    **fields,
                },
            )
        except DuplicateKeyError:
            return False
        if status == "held":
            HELD.labels(notice.template).inc()
        return True

    async def send_due(self, moment: datetime | None = None) -> int:
        """Deliver the queued e-mails whose time has come; how many were looked at."""
        moment = moment or now()
        due = await self.documents.find(
            DELIVERIES,
            {"status": "queued", "next_attempt_at": {"$lte": moment.isoformat()}},
            sort=[("next_attempt_at", 1)],
            limit=SEND_BATCH,
        )
        # one recipient's e-mails one after another (their hourly limit counts what left), recipients at once
        by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for delivery in due:
            by_recipient[delivery["recipient_id"]].append(delivery)
        slots = asyncio.Semaphore(self.settings.smtp_connections)

        async def deliver_in_turn(deliveries: list[dict[str, Any]]) -> None:
            async with slots:
                for delivery in deliveries:
                    await self.deliver(delivery, moment)

        async with asyncio.TaskGroup() as sending:
            for deliveries in by_recipient.values():
                sending.create_task(deliver_in_turn(deliveries))
        return len(due)

    async def deliver(self, listed: dict[str, Any], moment: datetime) -> None:
        key = listed["id"]
        delivery = await self.documents.get(DELIVERIES, key)
        if delivery is None or delivery["status"] != "queued":
            return  # another replica's sender finished it since the batch was listed
        claim = await self.documents.get(CLAIMS, key)
        if claim is not None:
            claimed = datetime.fromisoformat(claim["claimed_at"])
            if moment - claimed > timedelta(seconds=self.settings.mail_unconfirmed_after_s):
                # it may have left before the crash: reported, never repeated (at most once beats twice)
                await self.finish(delivery, "unconfirmed", reason="interrupted_after_claim")
                log.warning("mail_unconfirmed", delivery=key, template=delivery["template"])
            return
        person = await projections.person(self.documents, delivery["recipient_id"]) or {}
        sealed = person.get("contact")
        contact = await self.vault.open(Sealed(**sealed)) if sealed else None
        if person.get("erased") or (sealed and contact is None):  # erased here, or its key shredded
            return await self.finish(delivery, "skipped", reason="recipient_erased")
        category = delivery["category"]
        if category != "transactional":
            preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, delivery["recipient_id"]))
            if category in preferences.unsubscribed:
                return await self.finish(delivery, "opted_out")
            if delivery["template"] != "digest" and domain.over_hourly_limit(
                category,
                await self._sent_in_last_hour(delivery["recipient_id"], moment),
                self.settings.mail_hourly_limit,
            ):
                HELD.labels(delivery["template"]).inc()
                return await self.finish(delivery, "held", reason="throttled")
        try:
            if contact is None:
                raise NotReady("recipient not known yet")
            context = await self.context_for(delivery, contact)
        except NotReady as waiting:
            return await self._wait(delivery, moment, str(waiting))
        message = self.compose(delivery, contact, context)

        async def commit() -> bool:
            try:
                await self.documents.insert(CLAIMS, key, {"claimed_at": now().isoformat()})
            except DuplicateKeyError:
                return False  # another sender has it
            return True

        try:
            sent = await self.mailer.send(message, commit=commit)
        except TemporaryMailFailure as failure:
            await self.documents.delete(CLAIMS, key)
            return await self._retry(delivery, moment, str(failure))
        except PermanentMailFailure as failure:
            await self.documents.delete(CLAIMS, key)
            DEAD.labels("smtp_refused").inc()
            return await self.finish(delivery, "dead", reason=str(failure))
        if sent:  # the claim stays: a sender holding a stale copy of this e-mail cannot claim it again
            await self.finish(delivery, "sent", sent_at=now().isoformat())
            SENT.labels(delivery["template"]).inc()

    async def _sent_in_last_hour(self, recipient_id: str, moment: datetime) -> int:
        return await self.documents.count(
            DELIVERIES,
            {
                "recipient_id": recipient_id,
                "status": "sent",
                "category": {"$ne": "transactional"},
                "sent_at": {"$gte": (moment - timedelta(hours=1)).isoformat()},
            },
        )

    async def finish(self, delivery: dict[str, Any], status: str, **fields: Any) -> None:
        await self.documents.put(DELIVERIES, delivery["id"], {**delivery, "status": status, **fields})

    async def _retry(self, delivery: dict[str, Any], moment: datetime, reason: str) -> None:
        attempts = delivery["attempts"] + 1
        if attempts >= self.settings.mail_max_attempts:
            DEAD.labels("smtp_unavailable").inc()
            return await self.finish(delivery, "dead", reason=reason, attempts=attempts)
        retry = domain.retry_at(moment, attempts, self.settings.mail_retry_base_s)
        await self.finish(delivery, "queued", reason=reason, attempts=attempts, next_attempt_at=retry.isoformat())

    async def _wait(self, delivery: dict[str, Any], moment: datetime, reason: str) -> None:
        created = datetime.fromisoformat(delivery["created_at"])
        if moment - created > timedelta(seconds=self.settings.mail_recipient_wait_s):
            DEAD.labels("never_known").inc()
            return await self.finish(delivery, "dead", reason=reason)
        retry = moment + timedelta(seconds=min(60.0, self.settings.mail_retry_base_s))
        await self.finish(delivery, "queued", reason=reason, next_attempt_at=retry.isoformat())

    def compose(self, delivery: dict[str, Any], contact: dict[str, Any], context: dict[str, Any]) -> EmailMessage:
        subject, text, html = self.letters.render(delivery["template"], context)
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = formataddr((contact.get("first_name") or "", contact["email"]))
        message["Subject"] = subject
        message["Date"] = format_datetime(now())
        message["Message-ID"] = f"<{delivery['id']}@civique>"  # the same e-mail always has the same id
        if context.get("unsubscribe_url"):
            message["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

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
