"""Crypto-shredding on both document stores."""

from datetime import UTC, datetime

from shared.runtime.backend import open_storage
from shared.runtime.vault import KEYS, Vault


async def test_sealed_data_reads_back_until_the_key_is_forgotten(settings):
    storage = open_storage(settings, "contract")
    try:
        vault = Vault(storage.documents)
        sealed = await vault.seal("v1", {"email": "marie@example.fr", "birth_date": "1990-05-04"})
        assert "marie" not in sealed.ciphertext and sealed.key_id == "v1"
        assert await vault.open(sealed) == {"email": "marie@example.fr", "birth_date": "1990-05-04"}
        other = await vault.seal("v2", {"email": "jean@example.fr"})
        assert await vault.open(sealed.model_copy(update={"key_id": "v2"})) is None  # wrong key: unreadable

        await vault.forget("v1")
        assert await vault.open(sealed) is None
        assert await storage.documents.get(KEYS, "v1") is None
        assert await vault.open(other) == {"email": "jean@example.fr"}
        assert await vault.open(None) is None
    finally:
        await storage.close()


async def test_shared_keys_are_remembered_and_shredded_after_their_retention(settings):
    storage = open_storage(settings, "contract")
    try:
        vault = Vault(storage.documents, collection="intake_keys", remember=True)
        old = await vault.seal("intake-old", {"password": "secret"})
        moment = datetime.now(UTC)
        recent = await vault.seal("intake-recent", {"password": "other"})
        other_process = Vault(storage.documents, collection="intake_keys", remember=True)
        assert await other_process.open(old) == {"password": "secret"}  # one key per hour, shared by replicas

        assert await vault.forget_created_before(moment) == ["intake-old"]
        assert await vault.open(old) is None  # shredded in memory too
        assert await Vault(storage.documents, collection="intake_keys").open(old) is None
        assert await vault.open(recent) == {"password": "other"}
        assert await storage.documents.get(KEYS, "intake-recent") is None  # kept apart from personal keys
    finally:
        await storage.close()
