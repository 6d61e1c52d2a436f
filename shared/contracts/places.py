"""Postal codes people type, checked against the offline geography."""

from typing import Annotated

from pydantic import AfterValidator

from shared import geo
from shared.contracts import refusal


def known_postal_code(value: str) -> str:
    """The postal code, normalised, when a commune has it."""
    try:
        return geo.postal_area(value).postal_code
    except geo.InvalidPostalCode:
        raise refusal("Le code postal doit compter 5 chiffres.") from None
    except geo.UnknownPostalCode:
        raise refusal("Ce code postal ne correspond à aucune commune (les codes CEDEX ne sont pas acceptés).") from None


KnownPostalCode = Annotated[str, AfterValidator(known_postal_code)]
