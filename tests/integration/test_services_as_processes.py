"""The publication flow with the services as real processes: each its own process on Kafka + FerretDB,
and all in one process (`python -m services`) on the embedded backend. Both policies."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.events import Actor
from shared.runtime.actors import actor_headers
from tests.conftest import ROOT, env_of, eventually, free_port

ADMIN, REFERENT = Actor(id="admin", role="admin"), Actor(id="ref-56", role="referent")
MANAGER = Actor(id="manager", role="manager")
MISSION = {
    "title": "Appels aux personnes isolées",
    "description": "Appeler chaque semaine des aînés isolés.",
    "domain": "keeping_in_touch",
    "remote": True,
    "places": 10,
}


INTERNAL_TOKEN, JWT_SECRET = "process-test-internal-token", "process-test-jwt-secret-long-enough-for-hs256"
LINK_SECRET = "process-test-link-secret"


def output_of(settings, module: str, port: int) -> Path:
    """Where a process started by `start` writes its logs and errors (appended across restarts)."""
    return settings.data_dir / f"{module}-{port}.log"


def output_tail(settings, module: str, port: int) -> str:
    return output_of(settings, module, port).read_text(errors="replace")[-3000:]


def start(module: str, settings, port: int) -> subprocess.Popen:
    env = env_of(settings) | {
        "CIVIQUE_PORT": str(port),
        "CIVIQUE_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "CIVIQUE_JWT_SECRET": JWT_SECRET,
        "CIVIQUE_LINK_SECRET": LINK_SECRET,
    }
    output = output_of(settings, module, port)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as log:  # a file, not a pipe: a pipe nobody reads would block a talkative process
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def urls(settings) -> Iterator[dict[str, str]]:
    """Base URL of each service: two processes on Kafka + FerretDB, one process embedded."""
    if settings.backend == "embedded":
        modules = {"services": ["missions", "moderation"]}
    else:
        modules = {"services.missions": ["missions"], "services.moderation": ["moderation"]}
    processes, urls = {}, {}
    for module, names in modules.items():
        port = free_port()
        processes[module, port] = start(module, settings, port)
        urls |= dict.fromkeys(names, f"http://127.0.0.1:{port}")
    yield urls
    for process in processes.values():
        process.terminate()
    for (module, port), process in processes.items():
        process.wait(timeout=30)
        assert process.returncode in (0, -15), output_tail(settings, module, port)


async def call(client: httpx.AsyncClient, actor: Actor, method: str, url: str, **kwargs) -> dict | list | None:
    answer = await client.request(method, url, headers=actor_headers(actor, INTERNAL_TOKEN), **kwargs)
    assert answer.status_code < 300, f"{method} {url}: {answer.text}"
    return answer.json() if answer.content else None


async def until(client: httpx.AsyncClient, actor: Actor, url: str, check, what: str) -> None:
    async def holds() -> bool:
        try:
            answer = await client.get(url, headers=actor_headers(actor, INTERNAL_TOKEN))
        except httpx.TransportError:  # still starting
            return False
        return answer.status_code == 200 and check(answer.json())

    await eventually(holds, within=60, what=what)


async def test_publication_flow_in_both_policies(urls):
    missions, moderation = urls["missions"], urls["moderation"]
    async with httpx.AsyncClient(timeout=10) as client:
        for url in set(urls.values()):
            await until(client, ADMIN, f"{url}/readyz", lambda r: r["status"] == "ok", f"{url} ready")
        await call(client, ADMIN, "PUT", f"{moderation}/moderation/referents/ref-56", json={"departments": ["56"]})
        organization = await call(
            client,
            MANAGER,
            "POST",
            f"{missions}/missions/organizations",
            json={
                "name": "Association des aidants",
                "kind": "association",
                "rna": "W561000999",
                "postal_code": "56100",
            },
        )
        organization_id = organization["organization_id"]
        await until(
            client,
            REFERENT,
            f"{moderation}/moderation/departments/56/queue",
            lambda q: any(e["id"] == organization_id for e in q),
            "the organisation in the queue",
        )
        await call(
            client,
            REFERENT,
            "POST",
            f"{moderation}/moderation/organizations/{organization_id}/decision",
            json={"decision": "approve"},
        )

        async def publish(expect_review: bool) -> str:
            mission = await call(
                client, MANAGER, "POST", f"{missions}/missions/organizations/{organization_id}/missions", json=MISSION
            )
            mission_id = mission["mission_id"]
            await call(client, MANAGER, "POST", f"{missions}/missions/missions/{mission_id}/submit")
            await until(
                client,
                REFERENT,
                f"{moderation}/moderation/departments/56/queue",
                lambda q: any(e["id"] == mission_id for e in q),
                "the mission in the queue",
            )
            if expect_review:
                await call(
                    client,
                    REFERENT,
                    "POST",
                    f"{moderation}/moderation/missions/{mission_id}/decision",
                    json={"decision": "validate"},
                )
            await until(
                client,
                MANAGER,
                f"{missions}/missions/missions/{mission_id}",
                lambda m: m["status"] == "published",
                "the mission published",
            )
            return mission_id

        await publish(expect_review=True)  # pre-moderation, the default
        await call(client, ADMIN, "PUT", f"{moderation}/moderation/departments/56/policy", json={"policy": "post"})
        await until(
            client,
            MANAGER,
            f"{missions}/missions/departments/56/moderation",
            lambda p: p["policy"] == "post",
            "the missions service applying post-moderation",
        )
        await publish(expect_review=False)  # post-moderation: online at once, reviewed afterwards

        await until(
            client,
            REFERENT,
            f"{moderation}/moderation/departments/56/dashboard",
            lambda d: d["missions_by_status"].get("published") == 2 and d["places"]["offered"] == 20,
            "the dashboard counting both missions",
        )
