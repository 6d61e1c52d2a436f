"""Events of the gateway: accounts, referent invitations, and spike-prone commands accepted at once and
carried out at the services' pace."""

from datetime import datetime
from typing import Any, Literal

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Department, Sealed


class AccountEvent(Event):
    topic = "gateway.account"
    account_id: str

    def stream_id(self) -> str:
        return f"account-{self.account_id}"


@catalog.register
class AccountOpened(AccountEvent):
    """The e-mail travels sealed under the person's key (a volunteer's account shares their volunteer id)."""

    role: Literal["volunteer", "manager", "referent", "admin"]
    email: Sealed


@catalog.register
class PasswordResetRequested(AccountEvent):
    """Someone asked for a new password for this account: its single-use link's token travels sealed under a key of
    its own, shredded once the link has served."""

    expires_at: datetime
    reset: Sealed


@catalog.register
class ReferentInvited(Event):
    """An admin invited a referent: the e-mail and the token are sealed under a key shredded at acceptance."""

    topic = "gateway.invitation"
    invitation_id: str
    departments: list[Department]
    invited_by: str
    expires_at: datetime
    invitation: Sealed

    def stream_id(self) -> str:
        return f"invitation-{self.invitation_id}"


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
