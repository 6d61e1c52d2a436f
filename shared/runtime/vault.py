"""Personal data sealed with a key per person, kept apart from events: erasing the key erases the data.

Events (in the event store and in Kafka) only ever hold ciphertext; the keys live in the platform's
key store (ADR 0007), where the services that seal personal data create them and the notifications
service reads them. `forget` deletes a person's key: every copy of their data becomes noise.
"""

import base64
import contextlib
import json
import os
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.events.vocabulary import Sealed
from shared.runtime.ports import DocumentStore, DuplicateKeyError

KEYS = "personal_data_keys"
NONCE_BYTES = 12


class Vault:
    """Keys in `collection` of a document store: the platform's key store, or a service's own for keys only it uses.

    With `remember`, keys stay in this process's memory once read: for a hot key shared by many
    records (the gateway's hourly intake key), never for per-person keys another process may shred.
    """

    def __init__(self, documents: DocumentStore, *, collection: str = KEYS, remember: bool = False) -> None:
        self.documents, self.collection = documents, collection
        self._remembered: dict[str, bytes] | None = {} if remember else None
        self._ciphers: dict[str, AESGCM] = {}  # remembered keys' ciphers, built once

    async def _key(self, owner_id: str, *, create: bool) -> bytes | None:
        if self._remembered is not None and owner_id in self._remembered:
            return self._remembered[owner_id]
        found = await self.documents.get(self.collection, owner_id)
        if found is None and create:
            encoded = base64.b64encode(AESGCM.generate_key(256)).decode()
            with contextlib.suppress(DuplicateKeyError):  # created concurrently: use that one
                await self.documents.insert(
                    self.collection,
                    owner_id,
                    {"owner_id": owner_id, "key": encoded, "created_at": datetime.now(UTC).isoformat()},
                )
            found = await self.documents.get(self.collection, owner_id)
        if found is None:
            return None
        key = base64.b64decode(found["key"])
        if self._remembered is not None:
            self._remembered[owner_id] = key
        return key

    async def seal(self, owner_id: str, data: dict[str, Any]) -> Sealed:
        """Encrypt `data` (JSON values) with the owner's key, created on first use."""
        return await self.seal_json(owner_id, json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str))

    async def seal_json(self, owner_id: str, plain: str) -> Sealed:
        """Encrypt a JSON object already serialised (a validated model's `model_dump_json()`): `open` reads it back."""
        cipher = self._ciphers.get(owner_id)
        if cipher is None:
            key = await self._key(owner_id, create=True)
            assert key is not None
            cipher = AESGCM(key)
            if self._remembered is not None:
                self._ciphers[owner_id] = cipher
        nonce = os.urandom(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, plain.encode(), owner_id.encode())
        return Sealed(key_id=owner_id, ciphertext=base64.b64encode(nonce + sealed).decode())

    async def open(self, sealed: Sealed | None) -> dict[str, Any] | None:
        """The data, or None once the owner's key was erased."""
        if sealed is None:
            return None
        key = await self._key(sealed.key_id, create=False)
        if key is None:
            return None
        raw = base64.b64decode(sealed.ciphertext)
        try:
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], sealed.key_id.encode())
        except InvalidTag:
            return None
        opened: dict[str, Any] = json.loads(plain)
        return opened

    async def forget(self, owner_id: str) -> None:
        """Crypto-shredding: delete the owner's key."""
        await self.documents.delete(self.collection, owner_id)
        if self._remembered is not None:
            self._remembered.pop(owner_id, None)
        self._ciphers.pop(owner_id, None)

    async def forget_created_before(self, moment: datetime) -> list[str]:
        """Shred every key created before `moment` (retention of keys shared by many records)."""
        expired = await self.documents.find(self.collection, {"created_at": {"$lt": moment.isoformat()}})
        for found in expired:
            await self.forget(found["owner_id"])
        return [found["owner_id"] for found in expired]
