"""Event classes, their registry, and upcasting of old payloads to the current schema."""

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import SYSTEM, Actor, Envelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(BaseModel):
    """Base of every domain event: a past-tense fact with a topic and a schema version."""

    # tolerant reader: a consumer built against an older catalog ignores fields it does not know
    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        """The type name written into envelopes: the class name."""
        return cls.__name__

    def stream_id(self) -> str:
        """The id of the aggregate this event belongs to (the Kafka key)."""
        raise NotImplementedError

    def envelope(
        self,
        stream_version: int,
        *,
        actor: Actor = SYSTEM,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        """Wrap this event for the event store at the given position of its stream."""
        return Envelope(
            type=self.event_type(),
            schema_version=self.schema_version,
            topic=self.topic,
            stream_id=self.stream_id(),
            stream_version=stream_version,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=self.model_dump(mode="json"),
        )


EventClass = TypeVar("EventClass", bound=type[Event])


class UnknownEventType(LookupError):
    """An envelope names a type (or a version) this catalog cannot read."""


class Catalog:
    """Type name → current event class, plus the upcasters that lift older payloads."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: "EventClass") -> "EventClass":
        """Class decorator: add an event class to the catalog."""
        name = cls.event_type()
        if name in self._classes:
            raise ValueError(f"event type {name} registered twice")
        self._classes[name] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: a function turning a `from_version` payload into a `from_version + 1` one."""

        def add(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return add

    def __iter__(self) -> Iterator[type[Event]]:
        return iter(sorted(self._classes.values(), key=lambda c: (c.topic, c.event_type())))

    def __contains__(self, event_type: str) -> bool:
        return event_type in self._classes

    def get(self, event_type: str) -> type[Event]:
        """The current class of an event type."""
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def topics(self) -> list[str]:
        """Every topic some event of the catalog is published on."""
        return sorted({cls.topic for cls in self._classes.values()})

    def has_upcasters(self, event_type: str, from_version: int) -> bool:
        """Whether a payload of `from_version` can be lifted to the current version."""
        current = self.get(event_type).schema_version
        return all((event_type, v) in self._upcasters for v in range(from_version, current))

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Lift a payload written at `version` to the current schema version, step by step."""
        cls = self.get(event_type)
        if version > cls.schema_version:
            raise UnknownEventType(f"{event_type} v{version} is newer than this catalog (v{cls.schema_version})")
        while version < cls.schema_version:
            try:
                data = self._upcasters[(event_type, version)](dict(data))
            except KeyError:
                raise UnknownEventType(f"no upcaster for {event_type} v{version}") from None
            version += 1
        return data

    def decode(self, envelope: Envelope) -> Event:
        """The typed event inside an envelope, upcast to the current schema version."""
        data = self.upcast(envelope.type, envelope.schema_version, envelope.data)
        return self.get(envelope.type).model_validate(data)


catalog = Catalog()
