"""A volunteer's sign-up: the profile the gateway accepts with a 202 and the volunteers service registers."""

import re
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, Field, StringConstraints

from shared.contracts import (
    MANAGERS,
    UNTYPED,
    VOLUNTEERS,
    Input,
    Operation,
    Untyped,
    refusal,
    roles,
)
from shared.contracts.places import KnownPostalCode
from shared.events.vocabulary import Availability, Domain, MissionMode

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


OPERATIONS = [
    Operation(
        "GET",
        "/volunteers/{volunteer_id}",
        "volunteers",
        "/volunteers/{volunteer_id}",
        roles("volunteer", "admin"),
        "A volunteer's profile",
        response=UNTYPED,
    ),
    Operation(
        "PATCH",
        "/volunteers/{volunteer_id}",
        "volunteers",
        "/volunteers/{volunteer_id}",
        VOLUNTEERS,
        "Change one's profile",
        response=None,
        body=Untyped,
        status=204,
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/export",
        "volunteers",
        "/volunteers/{volunteer_id}/export",
        VOLUNTEERS,
        "GDPR: everything held about the volunteer",
        response=UNTYPED,
    ),
    Operation(
        "GET",
        "/volunteers/{volunteer_id}/applications",
        "volunteers",
        "/volunteers/{volunteer_id}/applications",
        VOLUNTEERS,
        "The volunteer's applications, newest first",
        response=list[UNTYPED],
    ),
    Operation(
        "GET",
        "/missions/{mission_id}/applications",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications",
        MANAGERS,
        "The mission's applications, for its managers",
        response=list[UNTYPED],
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
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/refuse",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/refuse",
        MANAGERS,
        "Refuse an application, with a reason",
        response=None,
        body=Untyped,
        status=204,
    ),
    Operation(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/withdraw",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/withdraw",
        VOLUNTEERS,
        "Withdraw one's application",
        response=None,
        body=Untyped,
        status=204,
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
    ),
]
