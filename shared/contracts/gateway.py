"""The gateway's own operations: accounts and sessions, the asynchronous intake, registrations."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared.contracts import Input, ProblemAnswer
from shared.contracts.organizations import OrganizationProfile
from shared.contracts.volunteers import VolunteerProfile
from shared.events import Role
from shared.events.vocabulary import Department

Email = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Credentials(Input):
    email: Email
    password: Password


class RefreshInput(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class Tokens(BaseModel):
    """A session: a short-lived access token for `Authorization: Bearer`, a refresh token to renew it."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds the access token lives")
    role: Role
    account_id: str


class Me(BaseModel):
    """The signed-in account: its role, and for a manager the organisations it manages."""

    account_id: str
    role: Role
    organizations: list[str] = Field(description="the organisations a manager registered or was added to")


class VolunteerSignUp(Input):
    password: Password
    volunteer: VolunteerProfile


class Accepted(BaseModel):
    """A command accepted for later: follow it at GET /api/v1/requests/{request_id}."""

    request_id: str
    status: Literal["pending"]


class RequestStatus(BaseModel):
    """Where an asynchronous request stands; `resource` once done, `problem` once rejected."""

    request_id: str
    status: Literal["pending", "done", "rejected"]
    kind: Literal["sign_up", "application"] | None = None
    accepted_at: datetime | None = None
    finished_at: datetime | None = None
    resource: dict[str, Any] | None = Field(
        default=None, description="sign-up: volunteer_id, department, account_id; application: application_id"
    )
    problem: ProblemAnswer | None = None


class OrganizationRegistration(Input):
    account: Credentials | None = Field(
        default=None, description="a new manager account; omitted when a signed-in manager adds an organisation"
    )
    organization: OrganizationProfile


class OrganizationRegistered(BaseModel):
    organization_id: str
    department: Department
    status: Literal["pending"]
    account_id: str


class PasswordResetRequest(Input):
    email: Email


class PasswordResetSent(BaseModel):
    """Alike whether an account has the address or not: only its owner learns it, by e-mail."""

    status: Literal["sent_if_known"]
    detail: str


class PasswordReset(Input):
    token: Annotated[str, StringConstraints(min_length=10, max_length=200)]
    password: Password


class Invitation(Input):
    email: Email
    departments: list[Department] = Field(min_length=1, max_length=20)


class InvitationSent(BaseModel):
    """The invitation left by e-mail; its link (with the token) travels only there."""

    invitation_id: str
    departments: list[Department]
    expires_in: int


class InvitationAcceptance(Input):
    password: Password


class ReferentAccount(BaseModel):
    account_id: str
    departments: list[Department]
