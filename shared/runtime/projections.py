"""Helpers for read models fed by events."""

from typing import Any

from shared.events import Envelope
from shared.runtime.ports import DocumentStore


async def fresh_document(
    documents: DocumentStore, collection: str, doc_id: str, env: Envelope
) -> dict[str, Any] | None:
    """The document to update for this event (its version moved on), or None when it already reflects it.

    Documents keep the version of the last event of their stream applied: a redelivered or older
    event changes nothing, which makes the projection idempotent.
    """
    doc = await documents.get(collection, doc_id) or {"id": doc_id, "version": 0}
    return None if doc["version"] >= env.stream_version else {**doc, "version": env.stream_version}
