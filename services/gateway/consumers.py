"""The consumer groups of the gateway: carrying out the commands accepted asynchronously, closing the
accounts of erased volunteers."""

from services.gateway.handlers import Accounts, Intake
from shared.events import ApplicationRequested, Envelope, SignUpRequested, VolunteerErased
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    intake, accounts = ctx.component(Intake), ctx.component(Accounts)

    async def close_account(event: VolunteerErased, _: Envelope) -> None:
        # the erasure route closes it at once; this closes it whoever asked for the erasure
        await accounts.delete(event.volunteer_id)

    return [
        # requests are independent (one stream each; accounts claim their e-mail by a unique insert): the keys of
        # a batch and the partitions side by side, so passwords are hashed and store round trips overlap
        Subscriber(
            "gateway.intake",
            {SignUpRequested: intake.carry_out, ApplicationRequested: intake.carry_out},
            concurrent=True,
            batch=16,
        ),
        Subscriber("gateway.accounts", {VolunteerErased: close_account}),
    ]
