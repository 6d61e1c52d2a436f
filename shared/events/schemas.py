"""JSON Schema and AsyncAPI export of the catalog, and the guard against breaking changes.

Each event gets `schemas/<Type>.v<N>.json`: the whole message as read from its topic (envelope
with `type` and `schema_version` fixed, `data` the payload). Files of older versions stay
committed: they prove that an upcaster exists for every version ever published.
"""

import json
from pathlib import Path
from typing import Any

from shared.events.catalog import Catalog, Event
from shared.events.envelope import Envelope

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]


def schema_file(cls: type[Event], version: int | None = None) -> str:
    """The file name of an event's schema at a version (the current one by default)."""
    return f"{cls.event_type()}.v{version or cls.schema_version}.json"


def message_schema(cls: type[Event]) -> Schema:
    """The JSON Schema of one event as a message: envelope plus typed payload."""
    envelope = Envelope.model_json_schema()
    payload = cls.model_json_schema()
    defs = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    envelope["properties"]["type"] = {"const": cls.event_type()}
    envelope["properties"]["schema_version"] = {"const": cls.schema_version}
    envelope["properties"]["topic"] = {"const": cls.topic}
    envelope["properties"]["data"] = payload
    envelope["required"] = sorted(set(envelope.get("required", [])) | {"event_id", "occurred_at", "actor"})
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": schema_file(cls),
        "title": f"{cls.event_type()} v{cls.schema_version}",
        "description": (cls.__doc__ or "").strip() or f"{cls.event_type()} on {cls.topic}",
        "x-topic": cls.topic,
        **{k: v for k, v in envelope.items() if k not in ("title", "description")},
        "$defs": defs,
    }


def asyncapi(catalog: Catalog) -> dict[str, Any]:
    """An AsyncAPI 3 document: one channel per topic, one message per event type."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in catalog:
        name = cls.event_type()
        messages[name] = {
            "name": name,
            "title": name,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    h: {"type": "string"}
                    for h in ("ce_id", "ce_type", "ce_schema_version", "correlation_id", "causation_id")
                },
            },
            "payload": {"$ref": f"schemas/{schema_file(cls)}"},
        }
        channel = channels.setdefault(
            cls.topic.replace(".", "_"),
            {"address": cls.topic, "description": "Key: the aggregate id (per-aggregate order).", "messages": {}},
        )
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for key, channel in channels.items():
        operations[f"receive_{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in channel["messages"]],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Civique events",
            "version": "1",
            "description": "Every fact Civique's services publish on Kafka, for services and analytics.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render(catalog: Catalog) -> dict[str, str]:
    """Relative path → file content of the whole export, for the current versions."""
    files = {f"schemas/{schema_file(cls)}": _dump(message_schema(cls)) for cls in catalog}
    files["asyncapi.json"] = _dump(asyncapi(catalog))
    return files


def check(catalog: Catalog, directory: Path) -> list[str]:
    """Everything wrong between the catalog and a committed export; empty when they agree."""
    problems: list[str] = []
    for path, content in render(catalog).items():
        target = directory / path
        if not target.exists():
            problems.append(f"{path} is missing: run `python -m shared.events export`")
        elif target.read_text() != content:
            problems.append(f"{path} differs from the code: run `python -m shared.events export`")
    problems += breaking_changes_against(catalog, directory)
    for schema in sorted((directory / "schemas").glob("*.json")):
        event_type, _, version = schema.stem.rpartition(".v")
        if event_type not in catalog:
            problems.append(f"{schema.name}: {event_type} was published once and is gone from the catalog")
        elif not catalog.has_upcasters(event_type, int(version)):
            problems.append(f"{schema.name}: no upcaster chain from v{version} to the current version")
    return problems


def breaking_changes_against(catalog: Catalog, directory: Path) -> list[str]:
    """Breaking changes of each event against its committed schema of the same version."""
    problems = []
    for cls in catalog:
        committed = directory / "schemas" / schema_file(cls)
        if committed.exists():
            old = json.loads(committed.read_text())
            for change in breaking_changes(_payload(old), _payload(message_schema(cls))):
                problems.append(
                    f"{cls.event_type()} v{cls.schema_version}: {change}; bump schema_version and add an upcaster"
                )
    return problems


def export(catalog: Catalog, directory: Path) -> list[str]:
    """Write the export; refuses (returns the reasons) when it would hide a breaking change."""
    refused = breaking_changes_against(catalog, directory)
    if refused:
        return refused
    for path, content in render(catalog).items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return []


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What a reader of `new` could no longer read of what `old` allowed.

    Breaking: a field removed, a required field added, a type narrowed or changed,
    an enum value dropped. Adding optional fields or widening a type is compatible.
    """
    return _compare(old, new, old.get("$defs", {}), new.get("$defs", {}), "data")


def _payload(message: Schema) -> Schema:
    return {**message["properties"]["data"], "$defs": message.get("$defs", {})}


def _compare(old: Schema, new: Schema, old_defs: Schema, new_defs: Schema, path: str) -> list[str]:
    old, new = _resolve(old, old_defs), _resolve(new, new_defs)
    if "anyOf" in old:
        return [p for option in old["anyOf"] for p in _compare(option, new, old_defs, new_defs, path)]
    if "anyOf" in new:
        for option in new["anyOf"]:
            if not _compare(old, option, old_defs, new_defs, path):
                return []
        return [f"{path}: type changed from {_describe(old)} to {_describe(new)}"]
    widened = old.get("type") == "integer" and new.get("type") == "number"
    if old.get("type") != new.get("type") and not widened and {"type", "const", "enum"} & new.keys():
        return [f"{path}: type changed from {_describe(old)} to {_describe(new)}"]
    if old.get("format") != new.get("format") and "format" in new:
        return [f"{path}: format changed from {old.get('format')} to {new['format']}"]
    old_values, new_values = _values(old), _values(new)
    if new_values is not None:
        if old_values is None:
            return [f"{path}: now restricted to {sorted(map(str, new_values))}"]
        if old_values - new_values:
            return [f"{path}: values no longer accepted: {sorted(map(str, old_values - new_values))}"]
    problems = []
    if new.get("type") == "object" or "properties" in new:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for name, sub in old_props.items():
            if name not in new_props:
                problems.append(f"{path}.{name}: field removed")
            else:
                problems += _compare(sub, new_props[name], old_defs, new_defs, f"{path}.{name}")
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            problems.append(f"{path}.{name}: required field added")
    if new.get("type") == "array" and "items" in new:
        problems += _compare(old.get("items", {}), new["items"], old_defs, new_defs, f"{path}[]")
    return problems


def _resolve(schema: Schema, defs: Schema) -> Schema:
    while "$ref" in schema:
        schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _values(schema: Schema) -> set[Any] | None:
    if "const" in schema:
        return {schema["const"]}
    if "enum" in schema:
        return set(schema["enum"])
    return None


def _describe(schema: Schema) -> str:
    if "anyOf" in schema:
        return " | ".join(_describe(s) for s in schema["anyOf"])
    return str(schema.get("type") or schema.get("const") or schema.get("enum") or "any")


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
