"""Request models shared by the gateway and the service that carries the request out.

The gateway validates a whole request with the owning service's own model before it accepts it
(a 202 means "will be carried out"); the service validates it again at its own door.
"""

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

REFUSED = "refused"  # the error type whose message is already French, shown to people as it is


class Input(BaseModel):
    """A request body: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid")


def refusal(message: str) -> PydanticCustomError:
    """A validation error carrying its French message for the field's owner."""
    return PydanticCustomError(REFUSED, message)
