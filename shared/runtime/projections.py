"""Helpers for read models fed by events."""

from typing import Any

from shared.events import Envelope
from shared.runtime.ports import DocumentStore


async def fresh_document(
    documents: DocumentStore, collection: str, doc_id: str, env: Envelope, version_field: str = "version"
) -> dict[str, Any] | None:
    """The document to update for this event (its version moved on), or None when it already reflects it.

    Documents keep the version of the last event of their stream applied in `version_field` (one field
    per stream when several streams feed a document): a redelivered or older event changes nothing,
    which makes the projection idempotent.
    """
    doc = await documents.get(collection, doc_id) or {"id": doc_id}
    if doc.get(version_field, 0) >= env.stream_version:
        return None
    return {**doc, version_field: env.stream_version}
