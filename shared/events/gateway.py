"""Events of the gateway: spike-prone commands accepted at once and carried out at the services' pace."""

from typing import Any

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Sealed


class RequestEvent(Event):
    topic = "gateway.request"
    request_id: str

    def stream_id(self) -> str:
        return self.request_id


class IntakeCommand(RequestEvent):
    """A command accepted with a 202: published straight to its topic, never kept in an event store."""

    topic = "gateway.intake"


@catalog.register
class SignUpRequested(IntakeCommand):
    """A volunteer's sign-up, sealed with the intake key of its hour (shredded after the retention)."""

    payload: Sealed


@catalog.register
class ApplicationRequested(IntakeCommand):
    mission_id: str
    volunteer_id: str
    payload: Sealed | None = None


@catalog.register
class RequestCompleted(RequestEvent):
    resource: dict[str, Any]


@catalog.register
class RequestRejected(RequestEvent):
    status: int
    code: str
    detail: str
