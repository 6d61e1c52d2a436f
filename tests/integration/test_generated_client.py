"""A client generated from the public OpenAPI by a third-party generator (openapi-python-client) drives
a whole journey: a referent invited, an organisation registered and approved, a mission published,
a volunteer signed up who applies and is accepted."""

import asyncio
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import typing
from types import ModuleType
from typing import Any

import httpx
import pytest

from services.__main__ import SERVICES
from services.gateway.handlers import Accounts
from shared.runtime.app import create_app
from shared.runtime.mail import MAILBOX
from tests.conftest import eventually

PASSWORD = "Cerf-volant bleu 2026 !"


class GeneratedClient:
    """The generated package, called the way its users do: one module per operation, models from dicts."""

    def __init__(self, package: ModuleType, app: Any) -> None:
        self.package, self.app = package, app
        self.operations = {
            info.name.rsplit(".", 1)[1]: info.name
            for info in pkgutil.walk_packages(
                importlib.import_module(f"{package.__name__}.api").__path__, f"{package.__name__}.api."
            )
            if not info.ispkg
        }

    def session(self, token: str | None = None) -> Any:
        client_module = importlib.import_module(f"{self.package.__name__}.client")
        client = (
            client_module.AuthenticatedClient("http://civique.test", token)
            if token
            else client_module.Client("http://civique.test")
        )
        headers = {"authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=self.app, client=("10.1.0.1", 1234))
        client.set_async_httpx_client(
            httpx.AsyncClient(transport=transport, base_url="http://civique.test", headers=headers)
        )
        return client

    async def call(self, operation: str, bearer: str | None = None, body: dict | None = None, **params: Any) -> Any:
        """Call `operation` (its operationId) as `bearer`; the body goes through its generated model."""
        function = importlib.import_module(self.operations[operation]).asyncio_detailed
        if body is not None:
            params["body"] = model_of(function).from_dict(body)
        answer = await function(client=self.session(bearer), **params)
        return answer.status_code, json.loads(answer.content) if answer.content else None


def model_of(function: Any) -> Any:
    hint = typing.get_type_hints(function)["body"]
    candidates = typing.get_args(hint) or (hint,)
    return next(c for c in candidates if hasattr(c, "from_dict"))


@pytest.fixture
async def generated(settings, tmp_path):
    app = create_app(settings.model_copy(update={"jwt_secret": "j" * 32, "link_secret": "l"}), SERVICES)
    async with app.router.lifespan_context(app):
        (tmp_path / "openapi.json").write_text(json.dumps(app.openapi()))
        package = f"civique_client_{tmp_path.name.replace('-', '_')}"
        command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json"]
        command += ["--meta", "none", "--output-path", package]
        await asyncio.to_thread(subprocess.run, command, cwd=tmp_path, check=True, capture_output=True, timeout=120)
        sys.path.insert(0, str(tmp_path))
        try:
            yield GeneratedClient(importlib.import_module(package), app)
        finally:
            sys.path.remove(str(tmp_path))


async def test_a_generated_client_drives_sign_up_apply_and_accept(generated):
    app, call = generated.app, generated.call
    await app.state.runtime.context("gateway").component(Accounts).create("admin@exemple.fr", PASSWORD, "admin")
    admin = (await call("login", body={"email": "admin@exemple.fr", "password": PASSWORD}))[1]["access_token"]

    # a referent for the Finistère, invited by e-mail
    invitation = {"email": "referent@exemple.fr", "departments": ["29"]}
    assert (await call("invite_referent", admin, body=invitation))[0] == 201
    token = await link_token(app, "referent@exemple.fr")
    assert (await call("accept_invitation", body={"password": PASSWORD}, token=token))[0] == 201
    referent = (await call("login", body={"email": "referent@exemple.fr", "password": PASSWORD}))[1]["access_token"]

    # an organisation registered with its manager's account, approved by the referent
    registration = {
        "account": {"email": "responsable@exemple.fr", "password": PASSWORD},
        "organization": {"name": "Secours Brest", "kind": "association", "rna": "W291000123", "postal_code": "29200"},
    }
    status, registered = await call("register_organization", body=registration)
    assert status == 201, registered
    organization_id = registered["organization_id"]
    manager = (await call("login", body={"email": "responsable@exemple.fr", "password": PASSWORD}))[1]["access_token"]

    async def in_queue() -> bool:
        status, queue = await call("get_departments_department_queue", referent, department="29")
        return status == 200 and any(item.get("id") == organization_id for item in queue)

    await eventually(in_queue, what="the organisation in the referent's queue")
    decision = {"decision": "approve"}
    status, _ = await call(
        "post_moderation_organizations_organization_id_decision",
        referent,
        body=decision,
        organization_id=organization_id,
    )
    assert status == 204

    # a mission drafted, submitted, validated: published
    mission = {
        "title": "Distribution alimentaire",
        "description": "Préparer et distribuer des colis alimentaires.",
        "domain": "food_and_emergency_aid",
        "remote": False,
        "place": {"postal_code": "29200"},
        "places": 1,
        "safety": {"distancing": True, "protective_equipment": True, "supervision": True},
    }
    status, drafted = await call(
        "post_organizations_organization_id_missions", manager, body=mission, organization_id=organization_id
    )
    assert status == 201, drafted
    mission_id = drafted["mission_id"]
    assert (await call("post_missions_mission_id_submit", manager, mission_id=mission_id))[0] == 204

    async def submitted() -> bool:
        status, queue = await call("get_departments_department_queue", referent, department="29")
        return status == 200 and any(item.get("id") == mission_id for item in queue)

    await eventually(submitted, what="the mission in the referent's queue")
    status, _ = await call(
        "post_moderation_missions_mission_id_decision", referent, body={"decision": "validate"}, mission_id=mission_id
    )
    assert status == 204

    async def published() -> bool:
        status, found = await call("get_missions_mission_id", mission_id=mission_id)
        return status == 200 and found["status"] == "published"

    await eventually(published, what="the mission published")

    # a volunteer signs up (202, then done), applies, and is accepted
    volunteer = {
        "first_name": "Yann",
        "last_name": "Le Gall",
        "email": "yann@exemple.fr",
        "phone": "06 12 34 56 78",
        "birth_date": "1992-03-04",
        "postal_code": "29200",
        "domains": ["food_and_emergency_aid"],
        "availability": ["weekends"],
    }
    status, accepted = await call("sign_up", body={"password": PASSWORD, "volunteer": volunteer})
    assert status == 202, accepted
    volunteer_id = (await finished(call, accepted["request_id"]))["resource"]["volunteer_id"]
    volunteer_token = (await call("login", body={"email": "yann@exemple.fr", "password": PASSWORD}))[1]["access_token"]
    status, applied = await call(
        "apply", volunteer_token, body={"message": "Disponible le samedi"}, mission_id=mission_id
    )
    assert status == 202, applied
    application_id = (await finished(call, applied["request_id"]))["resource"]["application_id"]

    async def listed() -> bool:
        status, applications = await call("get_missions_mission_id_applications", manager, mission_id=mission_id)
        return status == 200 and [a["id"] for a in applications] == [application_id]

    await eventually(listed, what="the application in the manager's list")
    status, _ = await call(
        "post_missions_mission_id_applications_application_id_accept",
        manager,
        mission_id=mission_id,
        application_id=application_id,
    )
    assert status == 204

    async def accepted_for_the_volunteer() -> bool:
        mine = "get_volunteers_volunteer_id_applications"
        status, applications = await call(mine, volunteer_token, volunteer_id=volunteer_id)
        return status == 200 and [(a["id"], a["status"]) for a in applications] == [(application_id, "accepted")]

    await eventually(accepted_for_the_volunteer, what="the acceptance in the volunteer's applications")


async def link_token(app: Any, email: str) -> str:
    mailbox = app.state.runtime.context("notifications").documents
    letters: list[dict] = []

    async def delivered() -> bool:
        letters[:] = await mailbox.find(MAILBOX, {"to": email})
        return bool(letters)

    await eventually(delivered, what=f"the e-mail to {email}")
    return re.search(r"token=([\w-]+)", letters[0]["text"]).group(1)


async def finished(call: Any, request_id: str) -> dict:
    seen: dict = {}

    async def over() -> bool:
        seen.update((await call("request_status", request_id=request_id))[1])
        return seen["status"] in ("done", "rejected")

    await eventually(over, what=f"request {request_id} carried out")
    assert seen["status"] == "done", seen
    return seen
