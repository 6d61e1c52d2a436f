"""French geography, offline: postal code → communes, department, region, coordinates; distances.

Data: data/france.json.gz, built by scripts/build_geo.py from Etalab's administrative data and
GeoNames coordinates (sources, versions and licences in data/SOURCES.md).
"""

import bisect
import gzip
import heapq
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.errors import Invalid

DATA = Path(__file__).parent / "data" / "france.json.gz"
MALFORMED_POSTAL_CODE = Invalid("invalid_postal_code", "Le code postal doit compter 5 chiffres.")
UNKNOWN_POSTAL_CODE = Invalid("unknown_postal_code", "Ce code postal ne correspond à aucune commune.")
POSTAL_CODE = re.compile(r"^\d{5}$")
POSTAL_CODE_IN_TEXT = re.compile(r"\b(\d{5})\b")
EARTH_RADIUS_KM = 6371.0088


class InvalidPostalCode(ValueError):
    """Not five digits."""


class UnknownPostalCode(LookupError):
    """Five digits, but no commune has it (a CEDEX code, or a code that does not exist)."""


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    region_code: str
    region: str


@dataclass(frozen=True)
class Commune:
    insee_code: str
    name: str
    postal_code: str
    department: str
    population: int
    latitude: float
    longitude: float


@dataclass(frozen=True)
class PostalArea:
    """What a postal code designates: one or several communes, in one department."""

    postal_code: str
    communes: tuple[Commune, ...]

    @property
    def main_commune(self) -> Commune:
        return max(self.communes, key=lambda c: c.population)

    @property
    def department(self) -> str:
        return self.main_commune.department

    @property
    def latitude(self) -> float:
        return self.main_commune.latitude

    @property
    def longitude(self) -> float:
        return self.main_commune.longitude

    def commune(self, name: str | None) -> Commune:
        """The commune of that name (accents and case ignored), else the most populous one."""
        wanted = _fold(name or "")
        return next((c for c in self.communes if _fold(c.name) == wanted), self.main_commune)


@dataclass(frozen=True)
class _Geography:
    departments: dict[str, Department]
    areas: dict[str, PostalArea]


@cache
def _load() -> _Geography:
    raw = json.loads(gzip.decompress(DATA.read_bytes()))
    regions = raw["regions"]
    departments = {
        code: Department(code, name, region, regions.get(region, ""))
        for code, (name, region) in raw["departments"].items()
    }
    by_code: dict[str, list[Commune]] = {}
    for insee, name, department, population, codes in raw["communes"]:
        for postal_code, lat, lon in codes:
            by_code.setdefault(postal_code, []).append(
                Commune(insee, name, postal_code, department, population, lat, lon)
            )
    areas = {code: PostalArea(code, tuple(communes)) for code, communes in by_code.items()}
    return _Geography(departments, areas)


def postal_area(postal_code: str) -> PostalArea:
    """The communes and department of a postal code; InvalidPostalCode or UnknownPostalCode otherwise."""
    code = postal_code.strip().replace(" ", "")
    if not POSTAL_CODE.match(code):
        raise InvalidPostalCode(postal_code)
    try:
        return _load().areas[code]
    except KeyError:
        raise UnknownPostalCode(postal_code) from None


def department(code: str) -> Department:
    """A department by its code (01…95, 2A, 2B, 971…976)."""
    try:
        return _load().departments[code.upper()]
    except KeyError:
        raise LookupError(f"unknown department {code!r}") from None


def departments() -> list[Department]:
    """Every department, in code order."""
    return sorted(_load().departments.values(), key=lambda d: d.code)


def suggestions(text: str, limit: int = 8) -> list[Commune]:
    """Communes for what a person is typing: a postal code's first digits, or a name's first letters
    (accents and case ignored); the most populous first."""
    typed = text.strip()
    if typed.isdigit():
        areas = [area for code, area in _load().areas.items() if code.startswith(typed)]
        return sorted((area.main_commune for area in areas), key=lambda c: (c.postal_code, -c.population))[:limit]
    wanted = _fold(typed)
    if not wanted:
        return []
    names = _names()
    start = bisect.bisect_left(names, wanted, key=_first)
    end = bisect.bisect_left(names, wanted + "\uffff", key=_first)
    return heapq.nlargest(limit, (commune for _, commune in names[start:end]), key=lambda c: c.population)


def place_named(text: str) -> Commune | None:
    """The commune a person means by « 56000 », « Vannes » or « Vannes (56000) »: the postal code when there is
    one, else the most populous commune of that name (or, failing that, whose name starts so); None otherwise."""
    code = POSTAL_CODE_IN_TEXT.search(text)
    name = POSTAL_CODE_IN_TEXT.sub("", text).strip(" ()")
    if code:
        area = _load().areas.get(code.group(1))
        return area.commune(name) if area else None
    wanted = _fold(name)
    names = _names()
    start = bisect.bisect_left(names, wanted, key=_first)
    exact = [commune for folded, commune in names[start : start + 100] if folded == wanted]
    if wanted and exact:
        return max(exact, key=lambda c: c.population)
    found = suggestions(name, limit=1)
    return found[0] if found else None


def _first(pair: tuple[str, Commune]) -> str:
    return pair[0]


@cache
def _names() -> list[tuple[str, Commune]]:
    """Every commune under each of its postal codes, by folded name: prefixes are found by bisection."""
    return sorted(((_fold(c.name), c) for area in _load().areas.values() for c in area.communes), key=_first)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _fold(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", plain).strip()


def postal_area_or_refusal(postal_code: str, field: str = "postal_code") -> PostalArea:
    """`postal_area`, with a malformed or unknown code turned into a 422 for people, in French."""
    try:
        return postal_area(postal_code)
    except InvalidPostalCode:
        raise MALFORMED_POSTAL_CODE.with_fields({field: "5 chiffres attendus"}) from None
    except UnknownPostalCode:
        raise UNKNOWN_POSTAL_CODE.with_fields(
            {field: "code postal inconnu (les codes CEDEX ne sont pas acceptés)"}
        ) from None
