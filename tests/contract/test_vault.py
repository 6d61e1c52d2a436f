"""Crypto-shredding on both document stores."""

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
