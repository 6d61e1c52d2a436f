from pathlib import Path

import pytest
from pydantic import BaseModel, create_model

from shared.events import (
    Actor,
    Catalog,
    Envelope,
    Event,
    MissionSubmitted,
    UnknownEventType,
    VolunteerRegistered,
    catalog,
)
from shared.events.schemas import breaking_changes, check, export
from shared.events.vocabulary import MissionContent, Place, SafetyConditions, Sealed

EXPORT_DIR = Path(__file__).resolve().parents[2] / "docs" / "events"

CONTENT = MissionContent(
    title="Distribution alimentaire",
    description="Préparer et distribuer des colis",
    domain="food_and_emergency_aid",
    remote=False,
    department="2A",
    place=Place(postal_code="20000", commune="Ajaccio", department="2A", latitude=41.9, longitude=8.7),
    places=3,
    safety=SafetyConditions(distancing=True, protective_equipment=True, supervision=True),
)


def test_every_event_round_trips_through_the_wire_format():
    event = MissionSubmitted(mission_id="m-1", organization_id="o-1", content=CONTENT)
    envelope = event.envelope(2, actor=Actor(id="u-1", role="manager"), correlation_id="req-1")

    read = Envelope.from_json(envelope.to_json())

    assert read == envelope
    assert (read.topic, read.stream_id, read.stream_version) == ("missions.mission", "m-1", 2)
    assert catalog.decode(read) == event


def test_envelope_headers_carry_type_and_tracing_ids():
    envelope = MissionSubmitted(mission_id="m-1", organization_id="o-1", content=CONTENT).envelope(
        1, correlation_id="c-9", causation_id="e-8"
    )
    headers = dict(envelope.headers())
    assert headers["ce_type"] == b"MissionSubmitted"
    assert headers["ce_id"] == str(envelope.event_id).encode()
    assert (headers["correlation_id"], headers["causation_id"]) == (b"c-9", b"e-8")


def test_event_ids_are_time_ordered_uuid7():
    first = MissionSubmitted(mission_id="m", organization_id="o", content=CONTENT).envelope(1).event_id
    later = [
        MissionSubmitted(mission_id="m", organization_id="o", content=CONTENT).envelope(1).event_id for _ in range(50)
    ]
    assert first.version == 7
    assert all(str(e)[:8] >= str(first)[:8] for e in later)
    assert len({first, *later}) == 51


def test_the_catalog_has_every_event_of_the_domain_flows():
    required = """OrganizationRegistered OrganizationApproved OrganizationRejected MissionDrafted
    MissionSubmitted MissionValidated MissionRefused MissionChangesRequested MissionPublished
    MissionUnpublished MissionFilled MissionReopened MissionClosed MissionCancelled ReferentAppointed
    ModerationPolicyChanged VolunteerRegistered VolunteerProfileUpdated VolunteerErased
    ApplicationReceived ApplicationAccepted ApplicationRefused ApplicationWithdrawn
    ApplicationCancelled""".split()
    assert set(required) <= {cls.event_type() for cls in catalog}
    assert all(cls.topic.count(".") == 1 for cls in catalog)


def test_personal_fields_of_a_volunteer_only_travel_sealed():
    fields = VolunteerRegistered.model_fields
    assert fields["personal"].annotation is Sealed
    assert not {"email", "first_name", "last_name", "phone", "birth_date", "health_risk"} & set(fields)


def test_unknown_type_or_future_version_is_refused():
    envelope = Envelope(type="Nope", schema_version=1, topic="x.y", stream_id="s", stream_version=1, data={})
    with pytest.raises(UnknownEventType):
        catalog.decode(envelope)
    future = envelope.model_copy(update={"type": "MissionFilled", "schema_version": 9})
    with pytest.raises(UnknownEventType, match="newer"):
        catalog.decode(future)


def _catalog_with_greeting_v1(name_field: str) -> Catalog:
    versions = Catalog()
    fields = {"greeting_id": (str, ...), name_field: (str, ...)}
    greeting = create_model("Greeting", __base__=Event, **fields)
    greeting.topic = "test.greeting"
    greeting.stream_id = lambda self: self.greeting_id
    versions.register(greeting)
    return versions


def _catalog_with_greeting_v2() -> tuple[Catalog, type[Event]]:
    versions = Catalog()

    @versions.register
    class Greeting(Event):
        topic = "test.greeting"
        schema_version = 2
        greeting_id: str
        first_name: str
        last_name: str

        def stream_id(self) -> str:
            return self.greeting_id

    @versions.upcaster("Greeting", from_version=1)
    def split_name(data: dict) -> dict:
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first_name": first, "last_name": last}

    return versions, Greeting


def test_a_v1_payload_is_read_as_v2_through_its_upcaster():
    versions, greeting_v2 = _catalog_with_greeting_v2()
    v1 = Envelope(
        type="Greeting",
        schema_version=1,
        topic="test.greeting",
        stream_id="g",
        stream_version=1,
        data={"greeting_id": "g", "name": "Marie Curie"},
    )

    event = versions.decode(Envelope.from_json(v1.to_json()))

    assert isinstance(event, greeting_v2)
    assert (event.first_name, event.last_name) == ("Marie", "Curie")


def test_a_missing_upcaster_is_an_error_not_a_silent_pass():
    versions, _ = _catalog_with_greeting_v2()
    versions._upcasters.clear()
    v1 = Envelope(
        type="Greeting",
        schema_version=1,
        topic="test.greeting",
        stream_id="g",
        stream_version=1,
        data={"greeting_id": "g", "name": "Marie Curie"},
    )
    with pytest.raises(UnknownEventType, match="no upcaster"):
        versions.decode(v1)


def test_committed_export_matches_the_code():
    assert check(catalog, EXPORT_DIR) == []


def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


class _Old(BaseModel):
    a: str
    b: int | None = None
    kind: str = "x"


class _AddOptional(BaseModel):
    a: str
    b: int | None = None
    kind: str = "x"
    c: list[str] | None = None


class _RemoveField(BaseModel):
    a: str
    kind: str = "x"


class _ChangeType(BaseModel):
    a: int
    b: int | None = None
    kind: str = "x"


class _AddRequired(BaseModel):
    a: str
    b: int | None = None
    kind: str = "x"
    d: str


class _Narrow(BaseModel):
    a: str
    b: int
    kind: str = "x"


def test_adding_an_optional_field_is_compatible():
    assert breaking_changes(_schema(_Old), _schema(_AddOptional)) == []


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (_RemoveField, "data.b: field removed"),
        (_ChangeType, "data.a: type changed"),
        (_AddRequired, "data.d: required field added"),
        (_Narrow, "data.b: type changed"),
    ],
)
def test_breaking_changes_are_named(new, expected):
    changes = breaking_changes(_schema(_Old), _schema(new))
    assert any(change.startswith(expected) for change in changes), changes


def test_export_refuses_a_breaking_change_at_the_same_version(tmp_path):
    assert export(_catalog_with_greeting_v1("name"), tmp_path) == []
    new = _catalog_with_greeting_v1("full_name")  # same type and version, field renamed
    refused = export(new, tmp_path)
    assert refused and "name: field removed" in refused[0]
    assert any("field removed" in p for p in check(new, tmp_path))


def test_a_new_version_without_upcaster_fails_the_check(tmp_path):
    versions, _ = _catalog_with_greeting_v2()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "Greeting.v1.json").write_text("{}")
    assert export(versions, tmp_path) == []
    assert check(versions, tmp_path) == []
    versions._upcasters.clear()
    assert check(versions, tmp_path) == ["Greeting.v1.json: no upcaster chain from v1 to the current version"]
