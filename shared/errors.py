"""Refusals of the domain, in its own words: a stable code and a French message for people, no HTTP.

Domain modules and handlers raise them; the entry points map each kind to a status in one place
(`shared.runtime.errors`). Declare each refusal once, as a module constant, so that a code always
carries the same message, and raise a fresh copy of it: `raise MISSION_FULL()` (raising the constant
itself would chain every raise's frames onto it, kept alive for the life of the process).
"""

from collections.abc import Mapping
from typing import Self


class Refusal(Exception):
    """Something a person asked that the platform refuses, and why."""

    def __init__(self, code: str, detail: str, *, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(code)
        self.code, self.detail, self.fields = code, detail, dict(fields or {})

    def __call__(self) -> Self:
        """A fresh copy of this refusal, to raise."""
        return type(self)(self.code, self.detail, fields=self.fields)

    def with_fields(self, fields: Mapping[str, str]) -> Self:
        """A fresh copy of this refusal, naming the fields at fault."""
        return type(self)(self.code, self.detail, fields=fields)


class Invalid(Refusal):
    """What was sent breaks a rule of the data: a date already past, an unknown postal code."""


class NotFound(Refusal):
    """No such thing, or none the person may know of."""


class Forbidden(Refusal):
    """The person may not do this: another organisation's, another department's."""


class Conflict(Refusal):
    """The thing's state does not allow it now: a full mission, an application already decided."""


class Gone(Refusal):
    """It existed and does no more: an erased profile, an invitation used or expired."""


class LimitReached(Refusal):
    """Allowed, but not that often: invitations a month, attempts in a row."""


class Unauthenticated(Refusal):
    """Who is asking is not known, or no longer."""
