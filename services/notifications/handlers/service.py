"""The notifications service's handlers: events become e-mails in the delivery log (`delivery`) by their rules
(`notices`), the scheduler writes reminders and digests, referents' broadcasts fan out, people choose what
they receive. Who may act is checked here, by the rules of `shared.access`; refusals are `shared.errors` ones."""

import contextlib
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from services.notifications import domain, projections
from services.notifications.handlers.delivery import DELIVERIES, PREFERENCES, DeliveryLog, now
from services.notifications.handlers.notices import OrganizationUnknown, notices_for, scheduled
from services.notifications.projections import APPLICATIONS, MISSIONS, ORGANIZATIONS, PEOPLE
from shared.access import require_referent, require_role
from shared.contracts.notifications import (
    Broadcast,
    BroadcastAccepted,
    BroadcastReport,
    Failure,
    FailuresQuery,
    PreferencesChange,
    PreferencesView,
    Unsubscribable,
    Unsubscribed,
)
from shared.errors import NotFound
from shared.events import Actor, BroadcastPosted, Envelope, Event, OrganizationRegistered, catalog, new_id
from shared.runtime.mail import MAILBOX
from shared.runtime.ports import DocumentStore, DuplicateKeyError, EventStore
from shared.runtime.settings import Settings
from shared.runtime.streams import append_events

BROADCASTS = "broadcasts"
AWAITING = "awaiting_organizations"  # events parked until their organisation is known

BROADCAST_NOT_FOUND = NotFound("broadcast_not_found", "Ce message est introuvable ou en cours d’envoi.")
MESSAGE_NOT_FOUND = NotFound("message_not_found", "Cet e-mail est introuvable.")
NO_LOCAL_MAILBOX = NotFound("no_local_mailbox", "Les e-mails partent par SMTP : il n’y a pas de boîte locale.")


class Notifications:
    """Built once at start by the service's composition root, for its routes, consumers and jobs."""

    def __init__(self, documents: DocumentStore, store: EventStore, settings: Settings, log: DeliveryLog) -> None:
        self.documents, self.store, self.settings, self.log = documents, store, settings, log
        self.link_secret = settings.secret("link_secret")

    # ---- events → e-mails ----

    async def on_event(self, event: Event, env: Envelope) -> None:
        """Project the event, then write its e-mails into the delivery log (both idempotent)."""
        await projections.project(self.documents, event, env)
        try:
            notices = await notices_for(self.documents, event, env)
        except OrganizationUnknown as unknown:
            # its topic lags behind this one: the event waits for the organisation, then is told
            await self.documents.put(
                AWAITING,
                str(env.event_id),
                {"organization_id": unknown.organization_id, "envelope": env.to_json().decode()},
            )
            return
        announced = projections.person_announced(event)
        for notice in notices:
            # a welcome or an invitation goes with the person just projected (read from the consumer's batch)
            known = await projections.person(self.documents, announced) if notice.recipient_id == announced else None
            await self.log.enqueue(notice, recipient=known)
        if isinstance(event, OrganizationRegistered):
            for parked in await self.documents.find(AWAITING, {"organization_id": event.organization_id}):
                envelope = Envelope.from_json(parked["envelope"])
                await self.on_event(catalog.decode(envelope), envelope)
                await self.documents.delete(AWAITING, str(envelope.event_id))

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
        written += await self.gather_digests(moment)
        await self.log.forget_settled(moment)
        return written

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
                notice = scheduled("pending_applications_reminder", manager, f"pending:{week}:{organization_id}", facts)
                written += await self.log.enqueue(notice)
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
                notice = scheduled(template, manager, f"{template}:{mission['id']}", {"mission_id": mission["id"]})
                written += await self.log.enqueue(notice)
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
                written += await self.log.enqueue(scheduled("referent_todo", referent["id"], f"todo:{day}", facts))
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
            notice = scheduled(
                "digest", recipient_id, f"digest:{day}", {"items": [i["id"] for i in items], "gathers": gathers}
            )
            if await self.log.enqueue(notice, status="queued"):
                written += 1
                gathered = set(notice.facts["items"])
            else:  # written by an earlier run of the day that stopped midway: mark what it gathered
                gathered = set(
                    (await self.documents.get(DELIVERIES, notice.key) or {"facts": {"items": []}})["facts"]["items"]
                )
            for item in items:
                if item["id"] in gathered:
                    await self.log.finish(item, "digested", digest=notice.key)
        return written

    # ---- referents' broadcasts ----

    async def post_broadcast(self, actor: Actor, department: str, broadcast: Broadcast) -> BroadcastAccepted:
        """A referent writes to the volunteers of their department still without a mission; the e-mails leave
        from the broadcasts' consumer (`fan_out`)."""
        await self.check_department(actor, department)
        posted = BroadcastPosted(
            broadcast_id=new_id(),
            department=department,
            referent_id=actor.id,
            subject=broadcast.subject,
            body=broadcast.body,
        )
        await append_events(self.store, posted.stream_id(), 0, [posted], actor=actor)
        return BroadcastAccepted(broadcast_id=posted.broadcast_id, status="accepted")

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
            notice = scheduled("referent_broadcast", volunteer_id, str(env.event_id), facts)
            await self.log.enqueue(notice, broadcast_id=event.broadcast_id)

    async def broadcast_report(self, actor: Actor, broadcast_id: str) -> BroadcastReport:
        require_role(actor, "referent", "admin")
        broadcast = await self.documents.get(BROADCASTS, broadcast_id)
        if broadcast is None:
            raise BROADCAST_NOT_FOUND()
        await self.check_department(actor, broadcast["department"])
        counts: dict[str, int] = defaultdict(int)
        for delivery in await self.documents.find(DELIVERIES, {"broadcast_id": broadcast_id}):
            counts[delivery["status"]] += 1
        return BroadcastReport(
            broadcast_id=broadcast_id,
            department=broadcast["department"],
            subject=broadcast["subject"],
            posted_at=broadcast["posted_at"],
            recipients=broadcast["recipients"],
            sent=counts["sent"],
            waiting=counts["queued"],
            in_next_digest=counts["held"] + counts["digested"],
            opted_out=counts["opted_out"],
            not_delivered=counts["dead"] + counts["skipped"] + counts["unconfirmed"],
        )

    async def check_department(self, actor: Actor, department: str) -> None:
        """Referents of the department (as this service knows them from ReferentAppointed) and admins."""
        require_role(actor, "referent", "admin")
        referent = await projections.person(self.documents, actor.id) if actor.role == "referent" else None
        require_referent(actor, department, (referent or {}).get("departments", ()))

    # ---- for the operators ----

    async def failures(self, actor: Actor, query: FailuresQuery) -> list[Failure]:
        """E-mails given up (dead letters) or possibly sent before a crash (unconfirmed)."""
        require_role(actor, "admin")
        return await self.log.failures(query.status, query.limit)

    async def mailbox(self, limit: int = 200) -> list[dict[str, Any]]:
        """What an embedded run would have sent (no SMTP server), newest first."""
        self._check_mailbox()
        return await self.documents.find(MAILBOX, sort=[("sent_at", -1)], limit=limit)

    async def mailbox_letter(self, message_id: str) -> dict[str, Any]:
        self._check_mailbox()
        letter = await self.documents.get(MAILBOX, message_id)
        if letter is None:
            raise MESSAGE_NOT_FOUND()
        return letter

    def _check_mailbox(self) -> None:
        if self.settings.smtp_host:
            raise NO_LOCAL_MAILBOX()

    # ---- preferences and unsubscribing ----

    async def preferences(self, person_id: str) -> PreferencesView:
        return self._view(await self._preferences(person_id))

    async def change_preferences(self, actor: Actor, change: PreferencesChange) -> PreferencesView:
        """Realtime or daily summary (managers, referents, admins), and which optional e-mails to receive."""
        current = await self._preferences(actor.id)
        wanted: dict[Unsubscribable, bool | None] = {"news": change.news, "activity": change.activity}
        changed = current.changed(actor.role, frequency=change.frequency, wanted=wanted)
        await self.documents.put(PREFERENCES, actor.id, changed.doc())
        return self._view(changed)

    def unsubscribe_category(self, token: str | None) -> Unsubscribable:
        """What a valid unsubscribe link would stop (it changes nothing: opening a link is not asking)."""
        return domain.read_unsubscribe_token(self.link_secret, token)[1]

    async def unsubscribe(self, token: str | None) -> Unsubscribed:
        person_id, category = domain.read_unsubscribe_token(self.link_secret, token)
        current = await self._preferences(person_id)
        await self.documents.put(PREFERENCES, person_id, current.without(category).doc())
        return Unsubscribed(unsubscribed=category)

    async def _preferences(self, person_id: str) -> domain.Preferences:
        return domain.Preferences.of(await self.documents.get(PREFERENCES, person_id))

    @staticmethod
    def _view(preferences: domain.Preferences) -> PreferencesView:
        return PreferencesView(frequency=preferences.frequency, unsubscribed=sorted(preferences.unsubscribed))
