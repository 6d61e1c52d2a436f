"""The volunteers service's contracts: the sign-up profile the gateway accepts with a 202, the requests and
answers of its routes, and its public operations as the gateway relays them."""

import re
from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.contracts import MANAGERS, VOLUNTEERS, Input, Operation, refusal, roles
from shared.contracts.places import KnownPostalCode
from shared.events.vocabulary import AgeBracket, Availability, Department, Domain, MissionMode, PostalCode
from shared.events.volunteers import ApplicationRefusalReason, CancellationReason, WithdrawalReason

MIN_AGE, MAX_AGE = 16, 100
MOBILE = re.compile(r"^(?:\+33|0033|0)([67]\d{8})$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PARIS = ZoneInfo("Europe/Paris")


def today() -> date:
    """The date in France, where ages are counted."""
    return datetime.now(PARIS).date()


def age_on(birth_date: date, on: date) -> int:
    """Full years of a person born on `birth_date`, on the day `on`."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def normalize_email(email: str) -> str:
    """The form e-mails are compared in."""
    return email.strip().lower()


def normalize_mobile(phone: str) -> str | None:
    """A French mobile number as +33XXXXXXXXX, or None."""
    match = MOBILE.match(re.sub(r"[\s.\-()]", "", phone))
    return f"+33{match.group(1)}" if match else None


def _email(value: str) -> str:
    if not EMAIL.match(normalize_email(value)):
        raise refusal("Adresse e-mail invalide.")
    return value


def _mobile(value: str) -> str:
    if normalize_mobile(value) is None:
        raise refusal("Indiquez un numéro de mobile français (06 ou 07).")
    return value


def _birth_date(value: date) -> date:
    age = age_on(value, today())
    if value > today() or age > MAX_AGE:
        raise refusal("Vérifiez votre date de naissance.")
    if age < MIN_AGE:
        raise refusal("Il faut avoir au moins 16 ans pour s’engager.")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)]
Mobile = Annotated[str, StringConstraints(max_length=30), AfterValidator(_mobile)]
BirthDate = Annotated[date, AfterValidator(_birth_date)]


class VolunteerProfile(Input):
    """Everything a volunteer gives at sign-up."""

    first_name: Name
    last_name: Name
    email: Email
    phone: Mobile
    birth_date: BirthDate
    postal_code: KnownPostalCode
    domains: list[Domain] = Field(min_length=1, max_length=4)
    availability: list[Availability] = Field(min_length=1, max_length=3)
    mode: MissionMode = "both"
    max_distance_km: int = Field(default=10, ge=0, le=200)
    health_risk: bool = False
    visible_to_organizations: bool = True


PERSONAL_FIELDS = ("first_name", "last_name", "email", "phone", "birth_date", "health_risk")
CLEAR_FIELDS = ("domains", "availability", "mode", "max_distance_km", "visible_to_organizations")
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ProfileChanges(Input):
    """What a volunteer may change in their profile: only the fields sent change."""

    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(max_length=30)] | None = None
    health_risk: bool | None = None
    postal_code: str | None = Field(default=None, max_length=10)
    domains: list[Domain] | None = Field(default=None, min_length=1, max_length=4)
    availability: list[Availability] | None = Field(default=None, min_length=1, max_length=3)
    mode: MissionMode | None = None
    max_distance_km: int | None = Field(default=None, ge=0, le=200)
    visible_to_organizations: bool | None = None


class ApplicationInput(Input):
    """An application to a mission, with an optional message to its managers."""

    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class ApplicationRefusal(Input):
    reason: ApplicationRefusalReason
    comment: Comment | None = None


class ApplicationWithdrawal(Input):
    reason: WithdrawalReason
    comment: Comment | None = None


# ---- answers ----


class SignedUp(BaseModel):
    """The volunteer registered (201), or the one already registered with this e-mail (200)."""

    volunteer_id: str
    department: Department


class VolunteerProfileView(BaseModel):
    """A volunteer's whole profile, for the volunteer and the admins. The fields of the read model are null
    for the moment between the sign-up and its projection."""

    id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    birth_date: date
    health_risk: bool
    postal_code: PostalCode | None = None
    department: Department | None = None
    age_bracket: AgeBracket | None = None
    domains: list[Domain] | None = None
    availability: list[Availability] | None = None
    mode: MissionMode | None = None
    max_distance_km: int | None = None
    onsite_restricted: bool | None = None
    visible_to_organizations: bool | None = None
    registered_at: datetime | None = None
    erased: bool | None = None


ApplicationStatus = Literal["pending", "accepted", "refused", "withdrawn", "cancelled"]


class ApplicationCreated(BaseModel):
    application_id: str
    status: Literal["pending"]


class ApplicationView(BaseModel):
    """An application as its author and the mission's managers read it; `message` is null once its author
    erased their data."""

    id: str
    mission_id: str
    volunteer_id: str
    organization_id: str
    status: ApplicationStatus
    promoted_from_waitlist: bool = False
    message: str | None = None
    applied_at: datetime
    updated_at: datetime | None = None
    reason: ApplicationRefusalReason | WithdrawalReason | CancellationReason | None = Field(
        default=None, description="why it was refused, withdrawn or cancelled"
    )


class Closed(BaseModel):
    """A shape of exactly these fields: members of a union are told apart by their fields."""

    model_config = ConfigDict(extra="forbid")


class ApplicantFirstName(Closed):
    """An applicant not accepted yet: their first name only."""

    first_name: str


class ApplicantContact(Closed):
    """An accepted applicant: their name and contact details."""

    first_name: str
    last_name: str
    email: str
    phone: str


class ErasedApplicant(Closed):
    """An applicant who erased their data: only the application's facts stay."""

    erased: Literal[True]


class MissionApplicationView(ApplicationView):
    volunteer: ApplicantContact | ApplicantFirstName | ErasedApplicant


class WaitlistPlace(BaseModel):
    mission_id: str
    since: datetime | None = None


class VolunteerExport(BaseModel):
    """GDPR: everything the platform holds about a volunteer, readable."""

    exported_at: datetime
    profile: VolunteerProfileView
    applications: list[ApplicationView]
    waitlists: list[WaitlistPlace]


SCOPE = ("role_not_allowed", "not_your_profile")
ROSTER = ("mission_not_found", "not_your_organization", "application_not_found")

OPERATIONS = [
    Operation(
        "GET",
        "/volunteers/{volunteer_id}",
        "volunteers",
        "/volunteers/{volunteer_id}",
        roles("volunteer", "admin"),
        "A volunteer's profile",
        response=VolunteerProfileView,
        problems=(*SCOPE, "volunteer_not_found"),
    ),
    Operation(
        "PATCH",
        "/volunteers/{volunteer_id}",
        "volunteers",
        "/volunteers/{volunteer_id}",
        VOLUNTEERS,
        "Change one's profile",
        response=None,
        body=ProfileChanges,
        status=204,
        problems=(*SCOPE, "volunteer_not_found", "invalid_volunteer", "invalid_postal_code", "unknown_postal_code"),
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/export",
        "volunteers",
        "/volunteers/{volunteer_id}/export",
        VOLUNTEERS,
        "GDPR: everything held about the volunteer",
        response=VolunteerExport,
        problems=(*SCOPE, "volunteer_not_found"),
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/applications",
        "volunteers",
        "/volunteers/{volunteer_id}/applications",
        VOLUNTEERS,
        "The volunteer's applications, newest first",
        response=list[ApplicationView],
        problems=SCOPE,
    ),
    Operation(
        "GET",
        "/missions/{mission_id}/applications",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications",
        MANAGERS,
        "The mission's applications, for its managers",
        response=list[MissionApplicationView],
        problems=("mission_not_found", "not_your_organization"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/accept",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/accept",
        MANAGERS,
        "Accept an application",
        response=None,
        status=204,
        problems=(*ROSTER, "application_not_pending", "mission_full"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/refuse",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/refuse",
        MANAGERS,
        "Refuse an application, with a reason",
        response=None,
        body=ApplicationRefusal,
        status=204,
        problems=(*ROSTER, "application_closed"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/withdraw",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/withdraw",
        VOLUNTEERS,
        "Withdraw one's application",
        response=None,
        body=ApplicationWithdrawal,
        status=204,
        problems=("role_not_allowed", "mission_not_found", "application_not_found", "application_closed"),
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/waitlist",
        "volunteers",
        "/volunteers/missions/{mission_id}/waitlist",
        VOLUNTEERS,
        "Join a full mission's waitlist",
        response=None,
        status=204,
        problems=(
            "role_not_allowed",
            "mission_not_found",
            "volunteer_not_found",
            "mission_not_open",
            "already_applied",
            "minors_not_accepted",
            "onsite_not_allowed_in_crisis",
            "places_left",
        ),
    ),
    Operation(
        "DELETE",
        "/missions/{mission_id}/waitlist",
        "volunteers",
        "/volunteers/missions/{mission_id}/waitlist",
        VOLUNTEERS,
        "Leave the waitlist",
        response=None,
        status=204,
        problems=("role_not_allowed", "mission_not_found", "not_on_waitlist"),
    ),
]
