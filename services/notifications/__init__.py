"""Notifications service: French e-mails for every transition, exactly once per recipient, throttled,
with reminders, daily digests and referents' broadcasts."""

import asyncio

import structlog

from services.notifications import projections
from services.notifications.api import pages, router
from services.notifications.consumers import subscribers
from services.notifications.handlers import AWAITING, DELIVERIES, DeliveryLog, Letters, Notifications
from shared.runtime.app import Service, ServiceContext
from shared.runtime.mail import mailer_for
from shared.runtime.vault import Vault

log = structlog.get_logger("civique.notifications")


async def setup(ctx: ServiceContext) -> None:
    """The composition root: the delivery log and the handlers, built once for the routes, the consumers and
    the jobs (CIVIQUE_LINK_SECRET required: MissingSecret otherwise); then the read models' indexes."""
    delivery = ctx.provide(
        DeliveryLog(ctx.documents, ctx.settings, Vault(ctx.keys), mailer_for(ctx.settings, ctx.documents), Letters())
    )
    ctx.provide(Notifications(ctx.documents, ctx.store, ctx.settings, delivery))
    await projections.setup(ctx.documents)
    await ctx.documents.ensure_index(DELIVERIES, ["status", "next_attempt_at"])
    await ctx.documents.ensure_index(DELIVERIES, ["recipient_id", "status", "sent_at"])
    await ctx.documents.ensure_index(DELIVERIES, ["broadcast_id"])
    await ctx.documents.ensure_index(AWAITING, ["organization_id"])


async def close_connections(ctx: ServiceContext) -> None:
    """The SMTP connections kept open go with the service."""
    await ctx.component(DeliveryLog).mailer.close()


async def send_continuously(ctx: ServiceContext) -> None:
    """The sender (`DeliveryLog.send_continuously`): e-mails as the consumers hand them over, and what else the
    delivery log holds due every `mail_send_interval_s`."""
    await ctx.component(DeliveryLog).send_continuously()


async def run_schedule_periodically(ctx: ServiceContext) -> None:
    """Reminders and digests: each keyed by its period, so running it often writes each once."""
    notifications = ctx.component(Notifications)
    while True:
        try:
            await notifications.run_schedule()
        except Exception:
            log.exception("schedule_failed")
        await asyncio.sleep(ctx.settings.schedule_interval_s)


service = Service(
    "notifications",
    routers=[router],
    public_routers=[pages],
    subscribers=subscribers,
    on_start=setup,
    on_stop=close_connections,
    background=[send_continuously, run_schedule_periodically],
)
