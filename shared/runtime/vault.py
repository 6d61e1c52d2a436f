"""Personal data sealed with a key per person, kept apart from events: erasing the key erases the data.

Events (in the event store and in Kafka) only ever hold ciphertext; the keys live in the owning
service's document store. `forget` deletes a person's key: every copy of their data becomes noise.
"""

import base64
import contextlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.events.vocabulary import Sealed
from shared.runtime.ports import DocumentStore, DuplicateKeyError

KEYS = "personal_data_keys"
NONCE_BYTES = 12


class Vault:
    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    async def _key(self, owner_id: str, *, create: bool) -> bytes | None:
        found = await self.documents.get(KEYS, owner_id)
        if found is None and create:
            key = base64.b64encode(AESGCM.generate_key(256)).decode()
            with contextlib.suppress(DuplicateKeyError):  # created concurrently: use that one
                await self.documents.insert(KEYS, owner_id, {"key": key})
            found = await self.documents.get(KEYS, owner_id)
        return base64.b64decode(found["key"]) if found else None

    async def seal(self, owner_id: str, data: dict[str, Any]) -> Sealed:
        """Encrypt `data` (JSON values) with the owner's key, created on first use."""
        key = await self._key(owner_id, create=True)
        assert key is not None
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()
        cipher = AESGCM(key).encrypt(nonce, plain, owner_id.encode())
        return Sealed(key_id=owner_id, ciphertext=base64.b64encode(nonce + cipher).decode())

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
        return json.loads(plain)

    async def forget(self, owner_id: str) -> None:
        """Crypto-shredding: delete the owner's key."""
        await self.documents.delete(KEYS, owner_id)
