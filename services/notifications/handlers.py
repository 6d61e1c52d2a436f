"""Notifications application layer: events become e-mails in the delivery log; the sender delivers them
exactly once; the scheduler writes reminders and digests; referents' broadcasts fan out.

The delivery log (`deliveries`) holds one document per (event or period, recipient, message), keyed by
`domain.delivery_key`: a redelivered event finds its e-mails there and adds nothing. The sender claims
an e-mail (a unique insert in `delivery_claims`, kept once sent) once the SMTP server accepted its
recipient and before the content goes, and marks it sent after: a crash in between leaves a claim on a
queued e-mail, which is reported unconfirmed once the claim outlived `mail_unconfirmed_after_s`, never
sent twice (ADR 0007).
"""

import contextlib
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from prometheus_client import Counter

from services.notifications import domain, projections
from services.notifications.domain import Notice
from services.notifications.projections import APPLICATIONS, MISSIONS, ORGANIZATIONS, PEOPLE
from shared.events import (
    AccountOpened,
    Actor,
    ApplicationAccepted,
    ApplicationCancelled,
    ApplicationReceived,
    ApplicationRefused,
    ApplicationWithdrawn,
    BroadcastPosted,
    Envelope,
    Event,
    MissionFilled,
    MissionModerated,
    MissionSubmitted,
    MissionUnpublished,
    OrganizationApproved,
    OrganizationRegistered,
    OrganizationRejected,
    ReferentInvited,
    TerritoryImbalanceDetected,
    VolunteerIdle,
    VolunteerInvited,
    VolunteerRegistered,
    catalog,
    new_id,
)
from shared.events.vocabulary import DOMAIN_LABELS, Sealed
from shared.runtime.app import ServiceContext
from shared.runtime.mail import Mailer, PermanentMailFailure, TemporaryMailFailure, mailer_for
from shared.runtime.ports import DuplicateKeyError
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events
from shared.runtime.vault import Vault

log = structlog.get_logger("civique.notifications")

DELIVERIES, CLAIMS, PREFERENCES, BROADCASTS = "deliveries", "delivery_claims", "preferences", "broadcasts"
AWAITING = "awaiting_organizations"  # events parked until their organisation is known
SENT = Counter("civique_mail_sent_total", "E-mails accepted by the SMTP server, by message", ["template"])
HELD = Counter("civique_mail_held_total", "E-mails held for the next digest, by message", ["template"])
DEAD = Counter("civique_mail_dead_letters_total", "E-mails given up, by reason", ["reason"])
SEND_BATCH = 100
TEMPLATES = Path(__file__).parent / "templates"


def now() -> datetime:
    return datetime.now(UTC)


class NotReady(Exception):
    """What an e-mail speaks of is not known here yet (its topic lags): try again a little later."""


class OrganizationUnknown(Exception):
    """An event for an organisation's managers came before the organisation (another topic lags)."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(organization_id)
        self.organization_id = organization_id


# ---- the letters: one Jinja2 file per message, one body rendered as plain text and as HTML ----


class Letters:
    def __init__(self) -> None:
        options: dict[str, Any] = {
            "loader": FileSystemLoader(TEMPLATES),
            "trim_blocks": True,
            "lstrip_blocks": True,
            "undefined": StrictUndefined,
        }
        self.text, self.html = Environment(autoescape=False, **options), Environment(autoescape=True, **options)
        for env in (self.text, self.html):
            env.filters["fr_date"] = lambda value: date.fromisoformat(str(value)[:10]).strftime("%d/%m/%Y")
            env.filters["domain_label"] = lambda value: DOMAIN_LABELS.get(value, value)
            env.filters["reason_label"] = domain.reason_label
            env.filters["imbalance_label"] = domain.IMBALANCE_KINDS.get
        self.html.filters["paragraphs"] = paragraphs

    def subject(self, template: str, context: dict[str, Any]) -> str:
        return " ".join(self._render(self.text, template, context, "subject").split())

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """Subject, plain text and HTML of a message."""
        text = re.sub(r"\n{3,}", "\n\n", self._render(self.text, template, context, "text")).strip() + "\n"
        return self.subject(template, context), text, self._render(self.html, template, context, "html")

    @staticmethod
    def _render(env: Environment, template: str, context: dict[str, Any], part: str) -> str:
        def link(url: str, label: str) -> str:
            if part == "html":
                return Markup('<a href="{}">{}</a>').format(url, label)
            return f"{label} : {url}"

        return env.get_template(f"{template}.jinja").render(**context, part=part, link=link)


def paragraphs(body: str) -> Markup:
    """HTML paragraphs from the body's blank-line-separated blocks (already escaped)."""
    blocks = [Markup(block.strip()) for block in str(body).split("\n\n") if block.strip()]
    return Markup("\n").join(Markup("<p>{}</p>").format(block.replace("\n", Markup("<br>\n"))) for block in blocks)


class Notifications:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx, self.documents, self.settings = ctx, ctx.documents, ctx.settings
        assert self.settings.link_secret, "the notifications service needs CIVIQUE_LINK_SECRET"
        self.vault = Vault(ctx.keys)
        self.mailer: Mailer = ctx.runtime.held(Mailer, lambda: mailer_for(ctx.settings, ctx.documents))  # type: ignore[type-abstract]
        self.letters = ctx.runtime.held(Letters, Letters)

    # ---- events → e-mails ----

    async def on_event(self, event: Event, env: Envelope) -> None:
        """Project the event, then write its e-mails into the delivery log (both idempotent)."""
        await projections.project(self.documents, event, env)
        try:
            notices = await self.notices_for(event, env)
        except OrganizationUnknown as unknown:
            # its topic lags behind this one: the event waits for the organisation, then is told
            await self.documents.put(
                AWAITING,
                str(env.event_id),
                {"organization_id": unknown.organization_id, "envelope": env.to_json().decode()},
            )
            return
        for notice in notices:
            await self.enqueue(notice)
        if isinstance(event, OrganizationRegistered):
            for parked in await self.documents.find(AWAITING, {"organization_id": event.organization_id}):
                envelope = Envelope.from_json(parked["envelope"])
                await self.on_event(catalog.decode(envelope), envelope)
                await self.documents.delete(AWAITING, str(envelope.event_id))

    async def notices_for(self, event: Event, env: Envelope) -> list[Notice]:
        source = str(env.event_id)

        def to(template: str, recipients: list[str], **facts: Any) -> list[Notice]:
            return [Notice(template, recipient, source, facts) for recipient in recipients]

        match event:
            case VolunteerRegistered():
                return to("volunteer_welcome", [event.volunteer_id])
            case AccountOpened(role="manager"):
                return to("manager_welcome", [event.account_id])
            case ReferentInvited():
                invitee = projections.invitee_id(event.invitation_id)
                return to("referent_invitation", [invitee], departments=event.departments)
            case MissionSubmitted():
                referents = await projections.referents_of(self.documents, event.content.department)
                return to("mission_submitted", referents, mission_id=event.mission_id)
            case MissionModerated():
                # taken offline by the decision: the MissionUnpublished that follows says it once
                mission = await self.documents.get(MISSIONS, event.mission_id) or {}
                if event.decision != "validated" and mission.get("online_at_decision", {}).get(str(env.stream_version)):
                    return []
                managers = await self._managers(event.organization_id)
                return to(f"mission_{event.decision}", managers, mission_id=event.mission_id, comment=event.comment)
            case MissionUnpublished():
                managers = await self._managers(event.organization_id)
                return to("mission_unpublished", managers, mission_id=event.mission_id, reason=event.reason)
            case MissionFilled():
                return to("mission_full", await self._managers(event.organization_id), mission_id=event.mission_id)
            case OrganizationApproved():
                managers = await self._managers(event.organization_id)
                return to("organization_approved", managers, organization_id=event.organization_id)
            case OrganizationRejected():
                managers = await self._managers(event.organization_id)
                return to(
                    "organization_rejected",
                    managers,
                    organization_id=event.organization_id,
                    reason=event.reason,
                    comment=event.comment,
                )
            case ApplicationReceived():
                managers = await self._managers(event.organization_id)
                confirmation = "waitlist_promoted" if event.promoted_from_waitlist else "application_confirmed"
                return [
                    *to("application_received", managers, mission_id=event.mission_id),
                    *to(confirmation, [event.volunteer_id], mission_id=event.mission_id),
                ]
            case ApplicationAccepted():
                notices = to(
                    "application_accepted",
                    [event.volunteer_id],
                    mission_id=event.mission_id,
                    organization_id=event.organization_id,
                )
                mission = await self.documents.get(MISSIONS, event.mission_id)
                if mission and "places" in mission:
                    free = mission["places"] - await projections.accepted_count(self.documents, event.mission_id)
                    if domain.is_almost_full(mission["places"], free):
                        managers = await self._managers(event.organization_id)
                        notices += to("mission_almost_full", managers, mission_id=event.mission_id)
                return notices
            case ApplicationRefused():
                return to(
                    "application_refused",
                    [event.volunteer_id],
                    mission_id=event.mission_id,
                    reason=event.reason,
                    comment=event.comment,
                )
            case ApplicationCancelled() if event.reason != "volunteer_erased":
                return to(
                    "application_cancelled", [event.volunteer_id], mission_id=event.mission_id, reason=event.reason
                )
            case ApplicationWithdrawn():
                managers = await self._managers(event.organization_id)
                return to("application_withdrawn", managers, mission_id=event.mission_id, reason=event.reason)
            case VolunteerInvited():
                return to(
                    "mission_invitation",
                    [event.volunteer_id],
                    mission_id=event.mission_id,
                    organization_id=event.organization_id,
                )
            case VolunteerIdle():
                return to("idle_digest", [event.volunteer_id], mission_ids=event.nearby_mission_ids)
            case TerritoryImbalanceDetected():
                referents = await projections.referents_of(self.documents, event.department)
                return to(
                    "territory_imbalance",
                    referents,
                    department=event.department,
                    domain=event.domain,
                    kind=event.kind,
                    summary=event.summary,
                )
        return []

    async def _managers(self, organization_id: str) -> list[str]:
        managers = await projections.managers_of(self.documents, organization_id)
        if not managers:
            raise OrganizationUnknown(organization_id)
        return managers

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

    # ---- the sender ----

    async def send_due(self, moment: datetime | None = None) -> int:
        """Deliver the queued e-mails whose time has come; how many were looked at."""
        moment = moment or now()
        due = await self.documents.find(
            DELIVERIES,
            {"status": "queued", "next_attempt_at": {"$lte": moment.isoformat()}},
            sort=[("next_attempt_at", 1)],
            limit=SEND_BATCH,
        )
        for delivery in due:
            await self.deliver(delivery, moment)
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
                await self._finish(delivery, "unconfirmed", reason="interrupted_after_claim")
                log.warning("mail_unconfirmed", delivery=key, template=delivery["template"])
            return
        person = await projections.person(self.documents, delivery["recipient_id"])
        if person is not None and person.get("erased"):
            return await self._finish(delivery, "skipped", reason="recipient_erased")
        contact = await self.vault.open(Sealed(**person["contact"])) if person and person.get("contact") else None
        if person and person.get("contact") and contact is None:
            return await self._finish(delivery, "skipped", reason="recipient_erased")
        category = delivery["category"]
        if category != "transactional":
            preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, delivery["recipient_id"]))
            if category in preferences.unsubscribed:
                return await self._finish(delivery, "opted_out")
            if delivery["template"] != "digest" and domain.over_hourly_limit(
                category,
                await self._sent_in_last_hour(delivery["recipient_id"], moment),
                self.settings.mail_hourly_limit,
            ):
                HELD.labels(delivery["template"]).inc()
                return await self._finish(delivery, "held", reason="throttled")
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
            return await self._finish(delivery, "dead", reason=str(failure))
        if sent:  # the claim stays: a sender holding a stale copy of this e-mail cannot claim it again
            await self._finish(delivery, "sent", sent_at=now().isoformat())
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

    async def _finish(self, delivery: dict[str, Any], status: str, **fields: Any) -> None:
        await self.documents.put(DELIVERIES, delivery["id"], {**delivery, "status": status, **fields})

    async def _retry(self, delivery: dict[str, Any], moment: datetime, reason: str) -> None:
        attempts = delivery["attempts"] + 1
        if attempts >= self.settings.mail_max_attempts:
            DEAD.labels("smtp_unavailable").inc()
            return await self._finish(delivery, "dead", reason=reason, attempts=attempts)
        retry = domain.retry_at(moment, attempts, self.settings.mail_retry_base_s)
        await self._finish(delivery, "queued", reason=reason, attempts=attempts, next_attempt_at=retry.isoformat())

    async def _wait(self, delivery: dict[str, Any], moment: datetime, reason: str) -> None:
        created = datetime.fromisoformat(delivery["created_at"])
        if moment - created > timedelta(seconds=self.settings.mail_recipient_wait_s):
            DEAD.labels("never_known").inc()
            return await self._finish(delivery, "dead", reason=reason)
        retry = moment + timedelta(seconds=min(60.0, self.settings.mail_retry_base_s))
        await self._finish(delivery, "queued", reason=reason, next_attempt_at=retry.isoformat())

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
            + domain.unsubscribe_token(
                self.settings.link_secret or "", delivery["recipient_id"], self._unsubscribes(delivery)
            )
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

    def _unsubscribes(self, delivery: dict[str, Any]) -> domain.Category:
        """The category a link in this e-mail unsubscribes from (a digest: what it gathers)."""
        if delivery["template"] == "digest":
            return delivery["facts"].get("gathers", "activity")
        return delivery["category"]

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

    # ---- the scheduler: reminders and digests, once per period (the period is part of the key) ----

    async def run_schedule(self, moment: datetime | None = None) -> int:
        """Every periodic e-mail due at `moment` (Paris time from `reminder_hour`); how many were written."""
        moment = moment or now()
        if moment.astimezone(domain.PARIS).hour < self.settings.reminder_hour:
            return 0
        written = await self.remind_pending_applications(moment)
        written += await self.remind_mission_ends(moment)
        if domain.is_weekday(moment):
            written += await self.send_referent_todos(moment)
        return written + await self.gather_digests(moment)

    async def remind_pending_applications(self, moment: datetime) -> int:
        """Weekly, to the managers: applications waiting for an answer for more than seven days."""
        stale = (moment - domain.PENDING_REMINDER_AFTER).isoformat()
        pending = await self.documents.find(APPLICATIONS, {"status": "pending", "received_at": {"$lte": stale}})
        by_organization: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for application in pending:
            by_organization[application["organization_id"]][application["mission_id"]] += 1
        week, written = domain.week_period(moment), 0
        for organization_id, missions in sorted(by_organization.items()):
            listed = [
                {"mission_id": m, "title": (await self.documents.get(MISSIONS, m) or {}).get("title", ""), "count": n}
                for m, n in sorted(missions.items())
            ]
            facts = {"organization_id": organization_id, "missions": listed, "count": sum(missions.values())}
            for manager in await projections.managers_of(self.documents, organization_id):
                notice = Notice("pending_applications_reminder", manager, f"pending:{week}:{organization_id}", facts)
                written += await self.enqueue(notice)
        return written

    async def remind_mission_ends(self, moment: datetime) -> int:
        """ "Votre mission a-t-elle pris fin ?" five days after its end date, then the closing warning."""
        today, written = domain.local_day(moment), 0
        online = await self.documents.find(MISSIONS, {"status": {"$in": ["published", "filled"]}})
        for mission in online:
            end = date.fromisoformat(mission["end_date"]) if mission.get("end_date") else None
            template = domain.mission_end_reminder(end, today)
            if template is None:
                continue
            for manager in await projections.managers_of(self.documents, mission["organization_id"]):
                notice = Notice(template, manager, f"{template}:{mission['id']}", {"mission_id": mission["id"]})
                written += await self.enqueue(notice)
        return written

    async def send_referent_todos(self, moment: datetime) -> int:
        """Weekdays, to each referent: missions and organisations awaiting them, only when there are some."""
        day, written = domain.local_day(moment), 0
        submitted = await self.documents.find(MISSIONS, {"status": "submitted"}, sort=[("submitted_at", 1)])
        pending = await self.documents.find(ORGANIZATIONS, {"status": "pending"})
        for referent in await self.documents.find(PEOPLE, {"departments": {"$exists": True}}):
            departments = set(referent.get("departments", ()))
            missions = [
                {
                    "mission_id": m["id"],
                    "title": m.get("title", ""),
                    "department": m.get("department"),
                    "waiting_days": (moment - datetime.fromisoformat(m["submitted_at"])).days,
                }
                for m in submitted
                if m.get("department") in departments and m.get("submitted_at")
            ]
            organizations = [
                {"organization_id": o["id"], "name": o.get("name", ""), "department": o.get("department")}
                for o in pending
                if o.get("department") in departments
            ]
            if missions or organizations:
                facts = {"missions": missions, "organizations": organizations}
                written += await self.enqueue(Notice("referent_todo", referent["id"], f"todo:{day}", facts))
        return written

    async def gather_digests(self, moment: datetime) -> int:
        """Daily: one e-mail per person gathering what was held for them (summary preference, throttling)."""
        held = await self.documents.find(DELIVERIES, {"status": "held"}, sort=[("created_at", 1)])
        by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in held:
            by_recipient[item["recipient_id"]].append(item)
        day, written = domain.local_day(moment).isoformat(), 0
        for recipient_id, items in sorted(by_recipient.items()):
            gathers = "news" if all(i["category"] == "news" for i in items) else "activity"
            notice = Notice(
                "digest", recipient_id, f"digest:{day}", {"items": [i["id"] for i in items], "gathers": gathers}
            )
            if await self.enqueue(notice, status="queued"):
                written += 1
                gathered = set(notice.facts["items"])
            else:  # written by an earlier run of the day that stopped midway: mark what it gathered
                gathered = set(
                    (await self.documents.get(DELIVERIES, notice.key) or {"facts": {"items": []}})["facts"]["items"]
                )
            for item in items:
                if item["id"] in gathered:
                    await self._finish(item, "digested", digest=notice.key)
        return written

    # ---- referents' broadcasts ----

    async def post_broadcast(self, actor: Actor, department: str, subject: str, body: str) -> dict[str, Any]:
        await self.check_department(actor, department)
        posted = BroadcastPosted(
            broadcast_id=new_id(), department=department, referent_id=actor.id, subject=subject, body=body
        )
        await append_events(self.ctx.store, posted.stream_id(), 0, [posted], actor=actor)
        return {"broadcast_id": posted.broadcast_id, "status": "accepted"}

    async def fan_out(self, event: BroadcastPosted, env: Envelope) -> None:
        """One e-mail per volunteer of the department still without a mission (throttled, opt-outs honoured)."""
        recipients = await projections.idle_volunteers(self.documents, event.department)
        with contextlib.suppress(DuplicateKeyError):
            await self.documents.insert(
                BROADCASTS,
                event.broadcast_id,
                {
                    "department": event.department,
                    "referent_id": event.referent_id,
                    "subject": event.subject,
                    "posted_at": env.occurred_at.isoformat(),
                    "recipients": len(recipients),
                },
            )
        facts = {"department": event.department, "subject": event.subject, "body": event.body}
        for volunteer_id in recipients:
            notice = Notice("referent_broadcast", volunteer_id, str(env.event_id), facts)
            await self.enqueue(notice, broadcast_id=event.broadcast_id)

    async def broadcast_report(self, actor: Actor, broadcast_id: str) -> dict[str, Any]:
        broadcast = await self.documents.get(BROADCASTS, broadcast_id)
        if broadcast is None:
            raise Problem(404, "broadcast_not_found", "Ce message est introuvable ou en cours d’envoi.")
        await self.check_department(actor, broadcast["department"])
        counts: dict[str, int] = defaultdict(int)
        for delivery in await self.documents.find(DELIVERIES, {"broadcast_id": broadcast_id}):
            counts[delivery["status"]] += 1
        return {
            "broadcast_id": broadcast_id,
            "department": broadcast["department"],
            "subject": broadcast["subject"],
            "posted_at": broadcast["posted_at"],
            "recipients": broadcast["recipients"],
            "sent": counts["sent"],
            "waiting": counts["queued"],
            "in_next_digest": counts["held"] + counts["digested"],
            "opted_out": counts["opted_out"],
            "not_delivered": counts["dead"] + counts["skipped"] + counts["unconfirmed"],
        }

    async def check_department(self, actor: Actor, department: str) -> None:
        if actor.role == "admin":
            return
        referent = await projections.person(self.documents, actor.id) if actor.role == "referent" else None
        if referent is None or department not in referent.get("departments", ()):
            raise Problem(403, "outside_your_departments", "Vous n’êtes pas référent de ce département.")

    # ---- preferences and unsubscribing ----

    async def preferences(self, person_id: str) -> dict[str, Any]:
        preferences = domain.Preferences.of(await self.documents.get(PREFERENCES, person_id))
        return {"frequency": preferences.frequency, "unsubscribed": sorted(preferences.unsubscribed)}

    async def set_preferences(self, person_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        current = await self.preferences(person_id)
        await self.documents.put(PREFERENCES, person_id, {**current, **changes})
        return await self.preferences(person_id)

    async def unsubscribe(self, token: str) -> domain.Category:
        person_id, category = domain.read_unsubscribe_token(self.settings.link_secret or "", token)
        current = await self.preferences(person_id)
        await self.set_preferences(person_id, {"unsubscribed": sorted({*current["unsubscribed"], category})})
        return category

    async def failures(self, status: str, limit: int) -> list[dict[str, Any]]:
        """Dead or unconfirmed e-mails for the operators: which message, why; no address."""
        found = await self.documents.find(DELIVERIES, {"status": status}, sort=[("created_at", -1)], limit=limit)
        fields = ("template", "recipient_id", "source", "attempts", "reason", "created_at")
        return [{"id": d["id"], **{f: d.get(f) for f in fields}} for d in found]
