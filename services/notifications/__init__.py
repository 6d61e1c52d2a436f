"""Notifications service: French e-mails for every transition, exactly once per recipient, throttled,
with reminders, daily digests and referents' broadcasts."""

import asyncio

import structlog

from services.notifications import projections
from services.notifications.api import pages, router
from services.notifications.consumers import subscribers
from services.notifications.handlers import AWAITING, DELIVERIES, SEND_BATCH, Notifications
from shared.runtime.app import Service, ServiceContext

log = structlog.get_logger("civique.notifications")


async def setup(ctx: ServiceContext) -> None:
    await projections.setup(ctx.documents)
    await ctx.documents.ensure_index(DELIVERIES, ["status", "next_attempt_at"])
    await ctx.documents.ensure_index(DELIVERIES, ["recipient_id", "status", "sent_at"])
    await ctx.documents.ensure_index(DELIVERIES, ["broadcast_id"])
    await ctx.documents.ensure_index(AWAITING, ["organization_id"])


async def send_continuously(ctx: ServiceContext) -> None:
    """The sender: delivers what is due, at once again when a batch was full."""
    while True:
        try:
            handled = await Notifications(ctx).log.send_due()
        except Exception:
            log.exception("send_failed")
            handled = 0
        if handled < SEND_BATCH:
            await asyncio.sleep(ctx.settings.mail_send_interval_s)


async def run_schedule_periodically(ctx: ServiceContext) -> None:
    """Reminders and digests: each keyed by its period, so running it often writes each once."""
    while True:
        try:
            await Notifications(ctx).run_schedule()
        except Exception:
            log.exception("schedule_failed")
        await asyncio.sleep(ctx.settings.schedule_interval_s)


service = Service(
    "notifications",
    routers=[router],
    public_routers=[pages],
    subscribers=subscribers,
    on_start=setup,
    background=[send_continuously, run_schedule_periodically],
)
