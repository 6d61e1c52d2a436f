"""The command lines, as an operator uses them: help, exit codes, French messages, no traceback; and
create-admin writes its account and leaves, without joining the platform's consumer groups."""

import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.gateway.handlers import ACCOUNTS
from shared.runtime.backend import open_storage
from tests.conftest import ROOT, env_of

PASSWORD = "Cerf-volant bleu 2026 !"


def command(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("module", ["services", "services.gateway", "services.missions", "services.notifications"])
def test_help_is_french_and_starts_nothing(module):
    done = command(module, "--help", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("utilisation :") and "CIVIQUE_" in done.stdout


def test_usage_mistakes_exit_2_without_a_traceback():
    for args in (("services.gateway", "bogus"), ("services.missions", "--port", "abc")):
        done = command(*args, timeout=30)
        assert done.returncode == 2 and "erreur" in done.stderr and "Traceback" not in done.stderr, args


async def test_create_admin_refuses_mistakes_in_french_and_joins_no_consumer_group(settings):
    env = env_of(settings)
    weak = command(
        "services.gateway", "create-admin", "admin@exemple.fr", env=env | {"CIVIQUE_ADMIN_PASSWORD": "faible"}
    )
    assert weak.returncode == 1 and "mot de passe" in weak.stderr and "Traceback" not in weak.stderr + weak.stdout
    not_an_email = command("services.gateway", "create-admin", "--", "admin", env=env)
    assert not_an_email.returncode == 1 and "adresse e-mail" in not_an_email.stderr
    no_password = command("services.gateway", "create-admin", "admin@exemple.fr", env=env)
    assert no_password.returncode == 1 and "CIVIQUE_ADMIN_PASSWORD" in no_password.stderr

    env |= {"CIVIQUE_ADMIN_PASSWORD": PASSWORD}
    created = command("services.gateway", "create-admin", "admin@exemple.fr", env=env)
    assert created.returncode == 0 and "Compte administrateur prêt" in created.stdout, created.stderr
    again = command("services.gateway", "create-admin", "admin@exemple.fr", env=env)
    assert again.returncode == 0 and again.stdout == created.stdout  # the same account
    taken = command(
        "services.gateway", "create-admin", "admin@exemple.fr", env=env | {"CIVIQUE_ADMIN_PASSWORD": "Un autre 2026 !"}
    )
    assert taken.returncode == 1 and "existe déjà" in taken.stderr and "Traceback" not in taken.stderr

    storage = open_storage(settings, "gateway")
    try:
        assert await storage.documents.count(ACCOUNTS, {"role": "admin"}) == 1
        assert await storage.store.backlog() == 1  # AccountOpened, left for the platform's relay
    finally:
        await storage.close()
    if settings.backend == "kafka+mongo":
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            groups = [group for group, *_ in await admin.list_consumer_groups()]
        finally:
            await admin.close()
        assert not [g for g in groups if g.startswith(settings.namespace)]
