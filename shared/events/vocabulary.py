"""Value types shared by several events: domains, places, safety, sealed personal data."""

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Domain = Literal[
    "food_and_emergency_aid",
    "emergency_childcare",
    "keeping_in_touch",
    "neighbourhood_solidarity",
]
DOMAINS: tuple[Domain, ...] = (
    "food_and_emergency_aid",
    "emergency_childcare",
    "keeping_in_touch",
    "neighbourhood_solidarity",
)
# how pages and e-mails name the domains
DOMAIN_LABELS: dict[Domain, str] = {
    "food_and_emergency_aid": "aide alimentaire et d’urgence",
    "emergency_childcare": "garde d’enfants",
    "keeping_in_touch": "lien avec les personnes isolées",
    "neighbourhood_solidarity": "solidarité de proximité",
}

# INSEE department codes: 01-95 without 20, Corsica 2A/2B, overseas 971-976
Department = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|1[0-9]|2[1-9]|[3-8][0-9]|9[0-5]|2[AB]|97[1-6])$")]
PostalCode = Annotated[str, StringConstraints(pattern=r"^\d{5}$")]

OrganizationKind = Literal[
    "association",
    "network_antenna",
    "local_authority",
    "public_establishment",
    "other_public_service",
]
ModerationPolicy = Literal["pre", "post"]
AgeBracket = Literal["16-17", "18-24", "25-34", "35-49", "50-64", "65-69", "70+"]
Availability = Literal["weekdays", "evenings", "weekends"]
MissionMode = Literal["on_site", "remote", "both"]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class SafetyConditions(Value):
    """What an on-site mission guarantees its volunteers (DOMAIN.md: required on site)."""

    distancing: bool
    protective_equipment: bool
    supervision: bool
    details: str | None = None


class Place(Value):
    """Where an on-site mission happens; coordinates are the commune's."""

    address: str | None = None
    postal_code: PostalCode
    commune: str | None = None
    department: Department
    latitude: float | None = None
    longitude: float | None = None


class MissionContent(Value):
    """Everything an organisation writes about a mission; carried whole by lifecycle events."""

    title: str
    description: str
    domain: Domain
    remote: bool
    department: Department
    place: Place | None = None
    places: int = Field(ge=1)
    start_date: date | None = None
    end_date: date | None = None
    recurring: bool = False
    schedule: str | None = None
    safety: SafetyConditions | None = None
    open_to_minors: bool = False
    prerequisites: list[str] = Field(default_factory=list, max_length=3)


class Sealed(Value):
    """Personal data encrypted with a per-person key kept outside the event store.

    Deleting the key (GDPR erasure) makes every copy of the ciphertext unreadable,
    in the event store and in Kafka alike (crypto-shredding).
    """

    key_id: str
    ciphertext: str
