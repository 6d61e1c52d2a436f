"""An organisation's registration: validated whole by the gateway before any account is opened, and
again by the missions service, which answers `RegisteredOrganization`."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, StringConstraints, model_validator

from shared.contracts import Input, refusal
from shared.contracts.places import KnownPostalCode
from shared.events.vocabulary import OrganizationKind

SIRET = re.compile(r"^\d{14}$")
RNA = re.compile(r"^W\d{9}$")
LA_POSTE_SIREN = "356000000"  # its SIRETs follow their own checksum rule


def siret_is_valid(siret: str) -> bool:
    """14 digits with a valid Luhn checksum (La Poste's offices may instead have a digit sum multiple of 5)."""
    if not SIRET.match(siret):
        return False
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(siret)):
        doubled = digit * 2 if i % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    la_poste_office = siret.startswith(LA_POSTE_SIREN) and sum(int(d) for d in siret) % 5 == 0
    return total % 10 == 0 or la_poste_office


def _siret(value: str) -> str:
    value = value.replace(" ", "")
    if not siret_is_valid(value):
        raise refusal("Le numéro SIRET doit compter 14 chiffres valides.")
    return value


def _rna(value: str) -> str:
    if not RNA.match(value):
        raise refusal("Le numéro RNA commence par W suivi de 9 chiffres.")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True)]
Siret = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20), AfterValidator(_siret)]
Rna = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=10), AfterValidator(_rna)]


class OrganizationProfile(Input):
    """What a manager gives to register an organisation: a SIRET or an RNA number is required."""

    name: Annotated[Text, StringConstraints(min_length=2, max_length=200)]
    kind: OrganizationKind
    establishment_type: Literal["school", "medical", "social", "medico_social"] | None = None
    siret: Siret | None = None
    rna: Rna | None = None
    postal_code: KnownPostalCode
    commune: Annotated[Text, StringConstraints(max_length=100)] | None = None
    description: Annotated[Text, StringConstraints(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _identified(self) -> "OrganizationProfile":
        if self.siret is None and self.rna is None:
            raise refusal("Indiquez un numéro SIRET ou RNA.")
        return self


class RegisteredOrganization(BaseModel):
    """A registered organisation: pending until a referent of its department decides."""

    organization_id: str
    department: str
    status: Literal["pending"]
