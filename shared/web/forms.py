"""Forms as people fill them in: what the browser sent, and what a page shows again after a refusal (the values
typed, a French error next to each field, a summary of the errors linked to the fields)."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError

from shared.runtime.errors import field_message
from shared.web.gateway import Refused

MAX_FIELDS = 200


class Submitted:
    """A form as the browser sent it: application/x-www-form-urlencoded (these pages upload no file)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.fields: dict[str, list[str]] = {}
        for name, value in pairs:
            self.fields.setdefault(name, []).append(value)

    @classmethod
    def parse(cls, body: bytes) -> "Submitted":
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return cls()
        return cls(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))

    def get(self, name: str) -> str:
        """The field's first value, without the spaces around it ("" when absent)."""
        return (self.fields.get(name) or [""])[0].strip()

    def raw(self, name: str) -> str:
        """The field's first value as typed, spaces kept (a password)."""
        return (self.fields.get(name) or [""])[0]

    def getlist(self, name: str) -> list[str]:
        """Every value of a field sent several times (checkboxes)."""
        return [value.strip() for value in self.fields.get(name, []) if value.strip()]


@dataclass
class Form:
    """A form as a page shows it: `labels` name the fields (the error summary uses them), `values` are what was
    typed, `errors` the French message of each field at fault; `problem` is an error about the whole form."""

    labels: Mapping[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    def value(self, name: str) -> str:
        value = self.values.get(name)
        return "" if value is None else str(value)

    def chosen(self, name: str, option: str) -> bool:
        """Whether a checkbox, radio button or option was chosen."""
        value = self.values.get(name)
        return option in value if isinstance(value, list | tuple | set) else str(value) == option

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    @property
    def valid(self) -> bool:
        return not self.errors and self.problem is None

    def check(self, name: str, adapter: TypeAdapter[Any], value: Any = None) -> Any:
        """The field's value as `adapter` reads it (the API contract's own type), or None with its French error."""
        try:
            return adapter.validate_python(self.values.get(name) if value is None else value)
        except ValidationError as invalid:
            self.errors[name] = field_message(invalid.errors()[0])
            return None

    def require(self, name: str, message: str = "Ce champ est obligatoire.") -> str:
        """The field's value; an error when it was left empty."""
        value = self.value(name)
        if not value:
            self.errors[name] = message
        return value

    def refused(self, refusal: Refused, field_of: Callable[[str], str | None] = lambda name: name) -> "Form":
        """The API's refusal shown on this form: each of its fields next to the form's own (`field_of` maps the
        API's name, e.g. `volunteer.birth_date`, to the form's, or None), the detail above the form."""
        for api_field, message in refusal.fields.items():
            name = field_of(api_field)
            if name is not None and name in self.labels:
                self.errors.setdefault(name, message)
        if not self.errors or refusal.code not in ("invalid_request",):
            self.problem = refusal.detail
        return self
