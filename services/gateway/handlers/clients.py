"""Calling the services: in process for those this process hosts, over the network for the others."""

from typing import Any

import httpx

from shared.events import Actor
from shared.runtime.actors import actor_headers
from shared.runtime.app import Runtime
from shared.runtime.ports import Unavailable
from shared.runtime.problems import Problem


class ServiceUnavailable(Problem, Unavailable):
    """A 503 for a person; for the intake worker, an outage to wait out (never a dead letter)."""

    def __init__(self, service: str) -> None:
        super().__init__(
            503,
            "service_unavailable",
            "Le service est momentanément indisponible : réessayez dans un instant.",
            headers={"Retry-After": "5"},
        )
        self.service = service


class Services:
    """HTTP to the services: in process for those this process hosts, over the network for the others."""

    def __init__(self, runtime: Runtime) -> None:
        self.token = runtime.settings.secret("internal_token")
        in_process = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url="http://in-process", timeout=10
        )
        urls = {
            "missions": runtime.settings.missions_url,
            "moderation": runtime.settings.moderation_url,
            "volunteers": runtime.settings.volunteers_url,
            "matching": runtime.settings.matching_url,
            "notifications": runtime.settings.notifications_url,
        }
        self.clients = {
            name: in_process
            if name in runtime.running
            else httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, connect=2))
            for name, url in urls.items()
        }

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        actor: Actor | None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"content-type": "application/json", **(headers or {})}
        if actor is not None:
            headers |= actor_headers(actor, self.token)
        elif self.token:
            headers["x-internal-token"] = self.token
        attempts = 3 if method in ("GET", "PUT", "DELETE") else 1  # only idempotent calls are retried
        for attempt in range(1, attempts + 1):
            try:
                return await self.clients[service].request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == attempts:
                    raise ServiceUnavailable(service) from None
        raise AssertionError("unreachable")


def services_of(runtime: Runtime) -> Services:
    """One client set per process (connection pools are reused)."""
    return runtime.held(Services, lambda: Services(runtime))
