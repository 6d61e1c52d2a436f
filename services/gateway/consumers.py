"""The consumer group of the gateway: carrying out the commands accepted asynchronously."""

from services.gateway.handlers import Intake
from shared.events import ApplicationRequested, SignUpRequested
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    intake = Intake(ctx)
    return [Subscriber("gateway.intake", {SignUpRequested: intake.carry_out, ApplicationRequested: intake.carry_out})]
