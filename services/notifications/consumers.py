"""The consumer groups of the notifications service: every event a rule tells someone of (`notices.RULES`) or
that tells it who they are (`projections.PROJECTIONS`: contact details, managers, referents, missions,
applications), and referents' broadcasts apart, so that a large fan-out never holds the other e-mails back."""

from services.notifications import projections
from services.notifications.handlers import Notifications
from services.notifications.handlers.notices import RULES
from shared.events import BroadcastPosted, Envelope, Event
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber

CONSUMED: tuple[type[Event], ...] = tuple(dict.fromkeys([*projections.PROJECTIONS, *RULES]))


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    """The handlers are the ones the composition root built (`ctx.component`), looked up when an event comes."""

    async def on_event(event: Event, env: Envelope) -> None:
        await ctx.component(Notifications).on_event(event, env)

    async def on_broadcast(event: BroadcastPosted, env: Envelope) -> None:
        await ctx.component(Notifications).fan_out(event, env)

    return [
        # e-mails beside the projections: a replay of its read models runs the projections alone (ADR 0011)
        Subscriber(
            "notifications.mail",
            dict.fromkeys(CONSUMED, on_event),
            read_models=(projections.PEOPLE, projections.ORGANIZATIONS, projections.MISSIONS, projections.APPLICATIONS),
            projections=projections.PROJECTIONS,
        ),
        Subscriber("notifications.broadcasts", {BroadcastPosted: on_broadcast}),
    ]
