"""The consumer group of the gateway: carrying out the commands accepted asynchronously."""

from services.gateway.handlers import intake_of
from shared.events import ApplicationRequested, SignUpRequested
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    intake = intake_of(ctx)
    return [Subscriber("gateway.intake", {SignUpRequested: intake.carry_out, ApplicationRequested: intake.carry_out})]
