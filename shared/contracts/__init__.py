"""Request models shared by the gateway and the service that carries the request out.

The gateway validates a whole request with the owning service's own model before it accepts it
(a 202 means "will be carried out"); the service validates it again at its own door.
"""

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from shared.events import Role

REFUSED = "refused"  # the error type whose message is already French, shown to people as it is


class Input(BaseModel):
    """A request body: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid")


def refusal(message: str) -> PydanticCustomError:
    """A validation error carrying its French message for the field's owner."""
    return PydanticCustomError(REFUSED, message)


class ProblemAnswer(BaseModel):
    """Every refusal: the status, a stable code for programs, a French message for people."""

    status: int
    code: str
    detail: str
    fields: dict[str, str] | None = None


@dataclass(frozen=True)
class Operation:
    """One operation of the public API (/api/v1), as the gateway relays it to the service that owns it.

    The models are the service's own: its route validates with `body` and `query` and answers
    `response`; the gateway validates with the same models before relaying and documents them.
    """

    method: str
    path: str  # under /api/v1
    service: str
    internal: str  # the service's route
    roles: frozenset[Role] | None  # None: anonymous visitors too
    summary: str
    response: Any = None  # a model, a list of models; None: 204 No Content
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    problems: tuple[str, ...] = ()  # the codes of the refusals that may answer, documented
    media_type: str = "application/json"  # text/html for a page a person opens from an e-mail

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def name(self) -> str:
        """The operation's id: its method and path, e.g. `post_missions_mission_id_submit`."""
        words = re.sub(r"[^a-z0-9]+", "_", self.path.lower()).strip("_")
        return f"{self.method.lower()}_{words}"


def roles(*names: Role) -> frozenset[Role]:
    """The roles allowed to call an operation."""
    return frozenset(names)


ANY_ROLE = roles("volunteer", "manager", "referent", "admin")
MANAGERS, MODERATORS, VOLUNTEERS, ADMINS = (
    roles("manager", "admin"),
    roles("referent", "admin"),
    roles("volunteer"),
    roles("admin"),
)
