"""The gateway on both backends: accounts, tokens, invitations, lockout, rate limits, idempotency keys,
and the authorization matrix of every public endpoint × every role."""

import base64
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY

from services.__main__ import SERVICES
from services.gateway import domain
from services.gateway.api import ROUTES
from services.gateway.domain import digest
from services.gateway.handlers import INVITATIONS, Accounts
from shared.events import SignUpRequested, new_id
from shared.events.vocabulary import Sealed
from shared.runtime.app import create_app
from shared.runtime.mail import MAILBOX
from shared.runtime.ports import OutgoingMessage
from tests.conftest import eventually

PASSWORD = "Cerf-volant bleu 2026 !"
JWT_SECRET = "a-test-secret-long-enough-for-hs256-keys"
VOLUNTEER = {
    "first_name": "Lucie",
    "last_name": "Aubrac",
    "email": "lucie.aubrac@exemple.fr",
    "phone": "06 11 22 33 44",
    "birth_date": "1990-07-29",
    "postal_code": "56000",
    "domains": ["keeping_in_touch"],
    "availability": ["evenings"],
}
ORGANIZATION = {"name": "Entraide Vannes", "kind": "association", "rna": "W561000777", "postal_code": "56000"}


class Gateway:
    def __init__(self, client: httpx.AsyncClient, app) -> None:
        self.client, self.app = client, app

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.app.state.runtime.context("gateway"))

    async def post(self, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        return await self.client.post(f"/api/v1{path}", headers=self.auth(token) | kwargs.pop("headers", {}), **kwargs)

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        return await self.client.get(f"/api/v1{path}", headers=self.auth(token))

    @staticmethod
    def auth(token: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"} if token else {}

    async def login(self, email: str, password: str = PASSWORD) -> dict:
        answer = await self.post("/auth/login", json={"email": email, "password": password})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def finished(self, request_id: str) -> dict:
        """Poll an asynchronous request until it is done or rejected."""
        seen: dict = {}

        async def over() -> bool:
            seen.update((await self.get(f"/requests/{request_id}")).json())
            return seen.get("status") in ("done", "rejected")

        await eventually(over, what=f"request {request_id} carried out")
        return seen

    async def admin(self) -> str:
        await self.accounts.create("admin@exemple.fr", PASSWORD, "admin")
        return (await self.login("admin@exemple.fr"))["access_token"]


def gateway_settings(settings, **overrides):
    """Secrets as production sets them; limits high enough for tests that are not about limits."""
    return settings.model_copy(
        update={
            "jwt_secret": JWT_SECRET,
            "internal_token": "test-internal",
            "link_secret": "test-links",
            "rate_limit_per_minute": 10_000,
            "sensitive_rate_limit_per_minute": 10_000,
            **overrides,
        }
    )


@pytest.fixture
async def gateway(settings):
    app = create_app(
        gateway_settings(settings),
        SERVICES,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            yield Gateway(client, app)


async def test_sign_up_is_accepted_at_once_then_carried_out(gateway):
    accepted = await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})
    assert accepted.status_code == 202 and accepted.json()["status"] == "pending"
    done = await gateway.finished(accepted.json()["request_id"])
    assert done["status"] == "done", done
    volunteer_id = done["resource"]["volunteer_id"]
    assert done["resource"]["account_id"] == volunteer_id

    again = await gateway.finished(
        (await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})).json()["request_id"]
    )
    assert again["status"] == "done" and again["resource"]["volunteer_id"] == volunteer_id
    other = await gateway.post("/volunteers", json={"password": "Un autre mot de passe 99", "volunteer": VOLUNTEER})
    refused = await gateway.finished(other.json()["request_id"])
    assert refused["status"] == "rejected" and refused["problem"]["code"] == "email_taken"
    bad = await gateway.post(
        "/volunteers",
        json={"password": PASSWORD, "volunteer": {**VOLUNTEER, "email": "x@y.fr", "birth_date": "2020-01-01"}},
    )
    rejected = await gateway.finished(bad.json()["request_id"])
    assert rejected["status"] == "rejected" and rejected["problem"]["code"] == "invalid_volunteer"
    assert "16 ans" in str(rejected["problem"]) or rejected["problem"]["detail"]

    tokens = await gateway.login("Lucie.Aubrac@exemple.fr ")
    assert tokens["role"] == "volunteer" and tokens["token_type"] == "Bearer"
    profile = await gateway.get(f"/volunteers/{volunteer_id}", tokens["access_token"])
    assert profile.status_code == 200 and profile.json()["last_name"] == "Aubrac"
    assert (await gateway.get(f"/volunteers/{volunteer_id}")).status_code == 401
    assert (await gateway.get("/requests/unknown")).status_code == 404

    applied = await gateway.post("/missions/nope/applications", tokens["access_token"], json={"message": "Bonjour"})
    assert applied.status_code == 202, applied.text
    outcome = await gateway.finished(applied.json()["request_id"])
    assert outcome["status"] == "rejected" and outcome["problem"]["code"] == "mission_not_found"


def accepted_sign_ups() -> float:
    return REGISTRY.get_sample_value("civique_intake_accepted_total", {"type": "SignUpRequested"}) or 0.0


async def test_weak_passwords_are_refused(gateway):
    before = accepted_sign_ups()
    for password in (
        "court",
        "password123",
        "azertyuiop",
        "Motdepasse2024!",
        "aaaaaaaaaaaa",
        "31415926535",
        "x-lucie.aubrac-x",
    ):
        answer = await gateway.post("/volunteers", json={"password": password, "volunteer": VOLUNTEER})
        assert (answer.status_code, answer.json()["code"]) == (422, "weak_password"), password
    assert accepted_sign_ups() == before  # nothing accepted


async def test_request_ids_are_signed_so_pending_needs_no_record(gateway):
    accepted = (await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})).json()
    request_id = accepted["request_id"]
    assert domain.issued_request(JWT_SECRET, request_id)
    forged = request_id[:-2] + ("AA" if not request_id.endswith("AA") else "BB")
    for unknown in (forged, request_id.split(".")[0], "unknown", f"{new_id()}.{request_id.split('.')[1]}", ".é\u00f2"):
        answer = await gateway.get(f"/requests/{unknown}")
        assert (answer.status_code, answer.json()["code"]) == (404, "request_not_found"), unknown
    never_published = domain.signed_request_id(JWT_SECRET)
    assert (await gateway.get(f"/requests/{never_published}")).json() == {
        "request_id": never_published,
        "status": "pending",
    }
    assert (await gateway.finished(request_id))["status"] == "done"


async def test_a_command_whose_intake_key_was_shredded_is_rejected_as_expired(gateway):
    request_id = domain.signed_request_id(JWT_SECRET)
    command = SignUpRequested(
        request_id=request_id,
        payload=Sealed(key_id="intake-2020010100", ciphertext=base64.b64encode(b"x" * 40).decode()),
    )
    await gateway.app.state.runtime.bus.publish([OutgoingMessage.of(command.envelope(1))])
    outcome = await gateway.finished(request_id)
    assert outcome["status"] == "rejected" and outcome["problem"]["code"] == "request_expired"
    assert outcome["kind"] == "sign_up"


async def test_unknown_email_and_wrong_password_answer_alike_then_lock(gateway):
    await gateway.accounts.create("jean.moulin@exemple.fr", PASSWORD, "manager")
    wrong = await gateway.post(
        "/auth/login", json={"email": "jean.moulin@exemple.fr", "password": "mauvais mot de passe"}
    )
    unknown = await gateway.post(
        "/auth/login", json={"email": "personne@exemple.fr", "password": "mauvais mot de passe"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    for email in ("jean.moulin@exemple.fr", "personne@exemple.fr"):
        answers = [
            await gateway.post("/auth/login", json={"email": email, "password": "encore faux"}) for _ in range(4)
        ]
        assert answers[-1].status_code == 401
        locked = await gateway.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert (locked.status_code, locked.json()["code"]) == (429, "account_locked"), email


async def test_refresh_rotates_logout_revokes_and_expired_tokens_are_refused(gateway):
    await gateway.accounts.create("manager@exemple.fr", PASSWORD, "manager")
    tokens = await gateway.login("manager@exemple.fr")
    renewed = await gateway.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200
    reused = await gateway.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (reused.status_code, reused.json()["code"]) == (401, "invalid_refresh_token")
    assert (
        await gateway.post("/auth/logout", json={"refresh_token": renewed.json()["refresh_token"]})
    ).status_code == 204
    revoked = await gateway.post("/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]})
    assert revoked.status_code == 401

    claims = jwt.decode(renewed.json()["access_token"], JWT_SECRET, algorithms=["HS256"])
    expired = jwt.encode({**claims, "exp": datetime.now(UTC) - timedelta(seconds=1)}, JWT_SECRET, algorithm="HS256")
    answer = await gateway.get("/organizations/x", expired)
    assert (answer.status_code, answer.json()["code"]) == (401, "token_expired")
    forged = jwt.encode({**claims, "role": "admin"}, "not-the-secret-of-this-platform-at-all", algorithm="HS256")
    assert (await gateway.get("/dashboard", forged)).status_code == 401


async def test_the_invitation_email_leads_to_the_referent_account(gateway):
    """Gateway → ReferentInvited → notifications → the local mailbox of embedded runs, readable at a URL."""
    admin = await gateway.admin()
    invited = await gateway.post(
        "/referent-invitations", admin, json={"email": "Lea@Prefecture.fr", "departments": ["56"]}
    )
    token = invited.json()["token"]
    mailbox = gateway.app.state.runtime.context("notifications").documents

    async def delivered() -> bool:
        return bool(await mailbox.find(MAILBOX, {"to": "lea@prefecture.fr"}))

    await eventually(delivered, what="the invitation e-mail in the local mailbox")
    letter = (await mailbox.find(MAILBOX, {"to": "lea@prefecture.fr"}))[0]
    assert "devenir référent" in letter["subject"] and f"token={token}" in letter["text"]
    listing = await gateway.client.get("/notifications/mailbox")
    assert listing.status_code == 200 and "devenir référent" in listing.text
    page = await gateway.client.get(f"/notifications/mailbox/{letter['id']}")
    assert f"token={token}" in page.text and page.headers["content-type"].startswith("text/html")
    assert (await gateway.post(f"/referent-invitations/{token}/accept", json={"password": PASSWORD})).status_code == 201

    async def welcomed() -> bool:  # the new account announced: its address is known to notifications
        return bool(await mailbox.find("people", {"role": "referent"}))

    await eventually(welcomed, what="the referent's account announced")


async def test_an_invitation_makes_a_referent_once_and_expires(gateway):
    admin = await gateway.admin()
    invited = await gateway.post(
        "/referent-invitations", admin, json={"email": "referente56@exemple.fr", "departments": ["56"]}
    )
    assert invited.status_code == 201
    token = invited.json()["token"]
    accepted = await gateway.post(f"/referent-invitations/{token}/accept", json={"password": PASSWORD})
    assert accepted.status_code == 201, accepted.text
    reused = await gateway.post(f"/referent-invitations/{token}/accept", json={"password": PASSWORD})
    assert (reused.status_code, reused.json()["code"]) == (410, "invitation_invalid")
    referent = await gateway.login("referente56@exemple.fr")
    assert referent["role"] == "referent"

    async def appointed() -> bool:
        answer = await gateway.get("/departments/56/queue", referent["access_token"])
        return answer.status_code == 200

    await eventually(appointed, what="the referent appointed to 56")
    assert (await gateway.get("/departments/29/queue", referent["access_token"])).status_code == 403

    late = (
        await gateway.post("/referent-invitations", admin, json={"email": "tard@exemple.fr", "departments": ["29"]})
    ).json()["token"]
    documents = gateway.app.state.runtime.context("gateway").documents
    stored = await documents.get(INVITATIONS, digest(late))
    await documents.put(INVITATIONS, digest(late), {**stored, "expires_at": "2000-01-01T00:00:00+00:00"})
    assert (await gateway.post(f"/referent-invitations/{late}/accept", json={"password": PASSWORD})).status_code == 410
    manager = await gateway.accounts.create("m@exemple.fr", PASSWORD, "manager")
    manager_token = (await gateway.login("m@exemple.fr"))["access_token"]
    refused = await gateway.post(
        "/referent-invitations", manager_token, json={"email": "x@exemple.fr", "departments": ["56"]}
    )
    assert refused.status_code == 403 and manager["role"] == "manager"


async def test_an_idempotency_key_replays_the_first_answer(gateway):
    registered = await gateway.post(
        "/organizations",
        json={"account": {"email": "resp@exemple.fr", "password": PASSWORD}, "organization": ORGANIZATION},
    )
    assert registered.status_code == 201, registered.text
    token = (await gateway.login("resp@exemple.fr"))["access_token"]
    organization_id = registered.json()["organization_id"]
    mission = {
        "title": "Appels",
        "description": "Appeler des personnes isolées.",
        "domain": "keeping_in_touch",
        "remote": True,
        "places": 3,
    }
    first = await gateway.post(
        f"/organizations/{organization_id}/missions", token, json=mission, headers={"idempotency-key": "k-1"}
    )
    second = await gateway.post(
        f"/organizations/{organization_id}/missions", token, json=mission, headers={"idempotency-key": "k-1"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"
    other = await gateway.post(
        f"/organizations/{organization_id}/missions",
        token,
        json={**mission, "places": 4},
        headers={"idempotency-key": "k-1"},
    )
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    listed = await gateway.get(f"/organizations/{organization_id}/missions", token)

    async def one_mission() -> bool:
        return len((await gateway.get(f"/organizations/{organization_id}/missions", token)).json()) == 1

    await eventually(one_mission, what="exactly one mission drafted")
    assert listed.status_code == 200


async def test_oversized_bodies_are_refused(gateway):
    token = await gateway.admin()
    answer = await gateway.client.put(
        "/api/v1/referents/r1",
        headers=gateway.auth(token),
        content=b'{"departments": ["56"], "pad": "' + b"x" * 70_000 + b'"}',
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "payload_too_large")


async def test_authorization_matrix_of_every_endpoint_and_role(gateway):
    admin = await gateway.admin()
    tokens = {"admin": admin, "anonymous": None}
    for role in ("volunteer", "manager", "referent"):
        await gateway.accounts.create(f"{role}@exemple.fr", PASSWORD, role)
        tokens[role] = (await gateway.login(f"{role}@exemple.fr"))["access_token"]
    failures = []
    for route in ROUTES:
        path = "/api/v1" + route.public.format(
            organization_id="o",
            mission_id="m",
            application_id="a",
            department="56",
            referent_id="r",
            volunteer_id="v",
            broadcast_id="b",
        )
        for role, token in tokens.items():
            answer = await gateway.client.request(route.method, path, headers=gateway.auth(token), json={})
            body = answer.json() if answer.headers.get("content-type", "").endswith("json") else None
            code = body.get("code") if isinstance(body, dict) else None
            if route.roles is not None and token is None:
                expected_ok = (answer.status_code, code) == (401, "unauthenticated")
            elif route.roles is not None and role not in route.roles:
                expected_ok = (answer.status_code, code) == (403, "role_not_allowed")
            else:
                expected_ok = answer.status_code not in (401, 500) and code != "role_not_allowed"
            if not expected_ok:
                failures.append(f"{route.method} {route.public} as {role}: {answer.status_code} {code}")
    # the endpoints the gateway answers itself
    custom = [
        ("POST", "/api/v1/missions/m/applications", {"volunteer"}, {}),
        ("POST", "/api/v1/referent-invitations", {"admin"}, {"email": "r@exemple.fr", "departments": ["56"]}),
    ]
    for method, path, allowed, body in custom:
        for role, token in tokens.items():
            answer = await gateway.client.request(method, path, headers=gateway.auth(token), json=body)
            expected = 401 if token is None else (None if role in allowed else 403)
            if (expected and answer.status_code != expected) or (not expected and answer.status_code in (401, 403)):
                failures.append(f"{method} {path} as {role}: {answer.status_code}")
    assert failures == []


async def test_rate_limits_answer_429_with_retry_after(settings):
    app = create_app(
        gateway_settings(settings, rate_limit_per_minute=5, sensitive_rate_limit_per_minute=2),
        SERVICES,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            answers = [await client.get("/api/v1/departments/56/moderation") for _ in range(6)]
            assert [a.status_code for a in answers[:5]] == [200] * 5
            assert answers[5].status_code == 429 and int(answers[5].headers["retry-after"]) >= 1
            assert answers[5].json()["code"] == "too_many_requests"
            logins = [
                await client.post("/api/v1/auth/login", json={"email": "a@b.fr", "password": "x"}) for _ in range(3)
            ]
            assert [a.status_code for a in logins] == [401, 401, 429]
