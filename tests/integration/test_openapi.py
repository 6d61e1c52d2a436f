"""The public API's contract: a valid OpenAPI document where every operation is typed, only public
routes, documentation pages that need no network."""

import re

import httpx
import pytest
from openapi_spec_validator import validate

from services.__main__ import SERVICES
from shared.runtime.app import create_app

BODY_METHODS = {"post", "put", "patch"}
GENERIC = ({}, {"type": "object"}, {"additionalProperties": True, "type": "object"})


@pytest.fixture
async def client(tmp_path):
    from tests.conftest import make_settings

    app = create_app(make_settings("embedded", tmp_path, None, jwt_secret="j" * 32, link_secret="l"), SERVICES)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def resolved(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def typed(document: dict, schema: dict | None) -> bool:
    """A schema that says what is inside: a model, a list of models, a scalar; not "any object"."""
    if schema is None:
        return False
    schema = resolved(document, schema)
    if schema.get("type") == "array":
        return typed(document, schema.get("items"))
    if "anyOf" in schema:
        return all(typed(document, s) for s in schema["anyOf"] if s.get("type") != "null")
    return schema not in GENERIC and (schema.get("type") != "object" or bool(schema.get("properties")))


def untyped_operations(document: dict) -> list[str]:
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None and not typed(document, body):
                found.append(f"{name}: untyped request body")
            answers = {code: a for code, a in operation["responses"].items() if code.startswith("2")}
            for code, answer in answers.items():
                content = answer.get("content", {})
                if code == "204" or (content and "application/json" not in content):
                    continue  # no content, or a page or a text format
                if not typed(document, content.get("application/json", {}).get("schema")):
                    found.append(f"{name}: untyped {code} answer")
    return found


async def test_the_public_document_is_valid_openapi_with_public_routes_only(client):
    document = (await client.get("/openapi.json")).json()
    validate(document)
    assert all(re.match(r"^/(api/v1/|healthz|readyz|metrics)", path) for path in document["paths"])


async def test_every_public_operation_is_typed_with_its_roles_and_problems(client):
    document = (await client.get("/openapi.json")).json()
    assert untyped_operations(document) == []
    relayed = [
        operation
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1/")
        for operation in operations.values()
        if "x-roles" in operation
    ]
    assert len(relayed) >= 40
    for operation in relayed:
        assert operation["description"].startswith("Rôles :")


async def test_documentation_pages_need_no_network(client):
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"url: ?['\"]([^'\"]+)", html)
        assert not [a for a in assets if a.startswith(("http://", "https://", "//"))], (page, assets)
        for asset in assets:
            answer = await client.get(asset)
            assert answer.status_code == 200, (page, asset)
