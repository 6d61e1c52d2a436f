"""The gateway's secrets: drawn once for an embedded run and kept, required from the environment otherwise."""

import pytest

from shared.runtime.app import with_process_secrets
from shared.runtime.settings import Settings


def test_an_embedded_run_keeps_its_drawn_secrets_across_restarts(tmp_path):
    first = with_process_secrets(Settings(data_dir=tmp_path))
    again = with_process_secrets(Settings(data_dir=tmp_path))
    assert first.jwt_secret and first.internal_token and first.link_secret
    assert len({first.jwt_secret, first.internal_token, first.link_secret}) == 3
    assert (again.jwt_secret, again.internal_token, again.link_secret) == (
        first.jwt_secret,
        first.internal_token,
        first.link_secret,
    )
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0  # readable by its owner only
    other = with_process_secrets(Settings(data_dir=tmp_path / "elsewhere"))
    assert other.jwt_secret != first.jwt_secret
    given = with_process_secrets(Settings(data_dir=tmp_path, jwt_secret="from-the-environment-0123456789"))
    assert given.jwt_secret == "from-the-environment-0123456789" and given.internal_token == first.internal_token


def test_production_without_secrets_refuses_to_start(tmp_path):
    with pytest.raises(SystemExit, match="CIVIQUE_JWT_SECRET"):
        with_process_secrets(Settings(backend="kafka+mongo", data_dir=tmp_path))
    assert not (tmp_path / "secrets.json").exists()
