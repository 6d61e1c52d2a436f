"""Every route outside /api/v1, the operations endpoints and public pages answers only the gateway
(the internal token), whether the services run in one process or apart; the public OpenAPI lists
only public routes, the internal document the others."""

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from services.__main__ import SERVICES
from shared.runtime.app import create_app
from shared.runtime.settings import Settings

PUBLIC = re.compile(r"^/(api/v1/.*|healthz|readyz|metrics|docs.*|redoc|openapi\.json|notifications/mailbox.*)$")
FORGED = {"x-actor-id": "someone", "x-actor-role": "admin"}


def endpoints(routes) -> set[tuple[str, str]]:
    return {
        (method, route.path) for route in routes if isinstance(route, APIRoute) for method in route.methods - {"HEAD"}
    }


def internal_routes(app) -> list[tuple[str, str]]:
    """Every route of every service the app hosts, and of the app itself, but the public ones (the API, the
    operations' routes, the pages of the services' public routers); no internal route hidden behind a page."""
    services = app.state.runtime.services
    internal = endpoints(route for s in services for router in s.routers for route in router.routes)
    pages = endpoints(route for s in services for router in s.public_routers for route in router.routes)
    assert not internal & pages, internal & pages
    found = (internal | endpoints(app.routes)) - pages
    return sorted((method, path) for method, path in found if not PUBLIC.match(path))


@pytest.fixture(params=["together", "apart"])
async def platforms(request, settings: Settings):
    """The whole platform in one process, or each service in its own app."""
    hosted = [SERVICES] if request.param == "together" else [[service] for service in SERVICES]
    apps = []
    for services in hosted:
        app = create_app(settings.model_copy(update={"jwt_secret": "j" * 32, "link_secret": "l"}), services)
        apps.append(app)
    yield apps


async def test_every_internal_route_refuses_a_caller_without_the_internal_token(platforms):
    checked = 0
    for app in platforms:
        async with app.router.lifespan_context(app):
            token = app.state.runtime.settings.internal_token
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
                for method, path in internal_routes(app):
                    url = re.sub(r"\{[^}]+\}", "x", path)
                    for headers in ({}, FORGED, FORGED | {"x-internal-token": "forged"}):
                        answer = await client.request(method, url, headers=headers, json={})
                        assert answer.status_code == 401, (method, path, headers, answer.text)
                        assert answer.json()["code"] == "unauthenticated"
                        checked += 1
                    trusted = await client.request(method, url, headers=FORGED | {"x-internal-token": token}, json={})
                    assert trusted.status_code != 401, (method, path, trusted.text)
    assert checked >= 3 * 40  # every service's routes were enumerated


async def test_a_volunteer_created_through_the_internal_route_needs_the_token(settings):
    app = create_app(settings.model_copy(update={"jwt_secret": "j" * 32, "link_secret": "l"}), SERVICES)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client,
    ):
        person = {
            "first_name": "Jean",
            "last_name": "Moulin",
            "email": "jean.moulin@exemple.fr",
            "phone": "0611223344",
            "birth_date": "1990-06-20",
            "postal_code": "29200",
            "domains": ["keeping_in_touch"],
            "availability": ["evenings"],
        }
        answer = await client.post("/volunteers", json=person)
        assert answer.status_code == 401
        assert await app.state.runtime.context("volunteers").documents.count("volunteers") == 0


async def test_the_public_openapi_lists_only_public_routes_and_the_internal_one_the_rest(settings):
    app = create_app(settings.model_copy(update={"jwt_secret": "j" * 32, "link_secret": "l"}), SERVICES)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client,
    ):
        public = (await client.get("/openapi.json")).json()["paths"]
        assert public and all(PUBLIC.match(path) for path in public), sorted(public)
        assert (await client.get("/internal/openapi.json")).status_code == 401
        token = app.state.runtime.settings.internal_token
        internal = (await client.get("/internal/openapi.json", headers={"x-internal-token": token})).json()["paths"]
        assert "/volunteers" in internal and "/missions/missions/{mission_id}" in internal
        assert not any(path.startswith("/api/v1") for path in internal)
