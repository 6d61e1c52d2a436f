"""The envelope every event travels in, from the event store through Kafka to consumers."""

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.ids import uuid7

Role = Literal["volunteer", "manager", "referent", "admin", "system"]


class Actor(BaseModel):
    """Who caused an event: a person with a role, or the platform itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    role: Role


SYSTEM = Actor(id="system", role="system")


class Envelope(BaseModel):
    """An event as stored and published: metadata plus the typed payload as plain data."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID = Field(default_factory=uuid7)
    type: str
    schema_version: int = Field(ge=1)
    topic: str
    stream_id: str
    stream_version: int = Field(ge=1)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: Actor = SYSTEM
    data: dict[str, Any]

    def to_json(self) -> bytes:
        """Serialise for the wire or a store column."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Envelope":
        """Parse what `to_json` wrote (any schema_version: upcasting happens in the catalog)."""
        return cls.model_validate_json(raw)

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka record headers, so routing, tracing and metrics need not parse the body."""
        pairs = [
            ("ce_id", str(self.event_id)),
            ("ce_type", self.type),
            ("ce_schema_version", str(self.schema_version)),
            ("correlation_id", self.correlation_id or ""),
            ("causation_id", self.causation_id or ""),
        ]
        return [(k, v.encode()) for k, v in pairs]
