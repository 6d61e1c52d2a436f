"""A burst of sign-ups through the gateway, with the whole platform killed (-9) mid-burst and restarted:
every accepted sign-up becomes exactly one volunteer and one account. On both backends."""

import asyncio
import signal
from collections import Counter

import httpx

from shared.runtime.backend import open_storage
from tests.conftest import NO_RATE_LIMITS, eventually, free_port
from tests.integration.test_services_as_processes import output_tail, start

BURST = 40
PASSWORD = "Cerf-volant bleu 2026 !"


def volunteer(n: int) -> dict:
    return {
        "first_name": "Ada",
        "last_name": f"Burst{n}",
        "email": f"burst{n}@exemple.fr",
        "phone": "06 00 00 00 01",
        "birth_date": "1985-01-01",
        "postal_code": "29200",
        "domains": ["keeping_in_touch"],
        "availability": ["weekends"],
    }


async def test_a_burst_survives_a_kill_mid_way(settings):
    settings = settings.model_copy(update=NO_RATE_LIMITS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    platform = start("services", settings, port)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=60, what="the platform")
            answers = await asyncio.gather(
                *(
                    client.post("/api/v1/volunteers", json={"password": PASSWORD, "volunteer": volunteer(n)})
                    for n in range(BURST)
                )
            )
            if [a.status_code for a in answers] != [202] * BURST:
                platform.terminate()
                platform.wait(timeout=30)
                raise AssertionError(
                    f"{[a.text for a in answers if a.status_code != 202]}; {output_tail(settings, 'services', port)}"
                )
            requests = [a.json()["request_id"] for a in answers]

            async def statuses() -> list[str]:
                return [(await client.get(f"/api/v1/requests/{r}")).json()["status"] for r in requests]

            async def some_done() -> bool:
                return (await statuses()).count("done") >= 3

            await eventually(some_done, within=60, what="the first sign-ups carried out")
            platform.send_signal(signal.SIGKILL)
            platform.wait(timeout=30)

            platform = start("services", settings, port)
            try:
                await eventually(ready, within=60, what="the platform after the restart")

                async def all_done() -> bool:
                    return (await statuses()) == ["done"] * BURST

                try:
                    await eventually(all_done, within=120, what="every sign-up carried out")
                except AssertionError as exc:
                    counts = Counter(await statuses())
                    platform.terminate()
                    platform.wait(timeout=30)
                    raise AssertionError(f"{exc}: {counts}; {output_tail(settings, 'services', port)}") from None
                resources = [(await client.get(f"/api/v1/requests/{r}")).json()["resource"] for r in requests]
                login = await client.post(
                    "/api/v1/auth/login", json={"email": "burst7@exemple.fr", "password": PASSWORD}
                )
                assert login.status_code == 200
            finally:
                platform.terminate()
                platform.wait(timeout=30)

    finally:  # whatever failed, no platform outlives the test
        if platform.poll() is None:
            platform.kill()
            platform.wait(timeout=30)

    assert len({r["volunteer_id"] for r in resources}) == BURST
    storage = open_storage(settings, "volunteers")
    try:
        streams = [await storage.store.read(r["volunteer_id"]) for r in resources]
        odd = [[e.type for e in stream] for stream in streams if [e.type for e in stream] != ["VolunteerRegistered"]]
        assert odd == [], odd
        assert await storage.documents.count("email_index") == BURST
    finally:
        await storage.close()
