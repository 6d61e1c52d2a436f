"""The gateway on both backends: accounts, tokens, invitations, lockout, rate limits, idempotency keys,
and the authorization matrix of every public endpoint × every role."""

import base64
import contextlib
import hashlib
import re
import socket
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY

from services.__main__ import SERVICES
from services.gateway import domain
from services.gateway.api import ROUTES, edge
from services.gateway.api.edge import RateLimiter
from services.gateway.api.intake import SignUpRoute
from services.gateway.domain import digest
from services.gateway.handlers import INVITATIONS, Accounts
from shared.events import SignUpRequested, new_id
from shared.events.vocabulary import Sealed
from shared.runtime.app import DirectRoutes, create_app
from shared.runtime.mail import MAILBOX
from shared.runtime.ports import OutgoingMessage
from shared.runtime.problems import Problem
from tests.conftest import NO_RATE_LIMITS, eventually, make_settings

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
        return self.app.state.runtime.context("gateway").component(Accounts)

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

    async def invite(self, admin: str, email: str, departments: list[str]) -> str:
        """Invite a referent; the token, as the referent finds it: in the invitation e-mail."""
        invited = await self.post("/referent-invitations", admin, json={"email": email, "departments": departments})
        assert invited.status_code == 201, invited.text
        assert "token" not in invited.json() and invited.json()["invitation_id"]
        letters: list[dict] = []

        async def delivered() -> bool:
            letters[:] = await self.mailbox.find(MAILBOX, {"to": email.lower()})
            return bool(letters)

        await eventually(delivered, what=f"the invitation e-mail to {email}")
        return re.search(r"token=([\w-]+)", letters[0]["text"]).group(1)

    @property
    def mailbox(self):
        return self.app.state.runtime.context("notifications").documents


def gateway_settings(settings, **overrides):
    """Secrets as production sets them; limits high enough for tests that are not about limits."""
    return settings.model_copy(
        update={
            "jwt_secret": JWT_SECRET,
            "internal_token": "test-internal",
            "link_secret": "test-links",
            **NO_RATE_LIMITS,
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
    too_young = await gateway.post(
        "/volunteers",
        json={"password": PASSWORD, "volunteer": {**VOLUNTEER, "email": "x@y.fr", "birth_date": "2020-01-01"}},
    )
    assert (too_young.status_code, too_young.json()["code"]) == (422, "invalid_request")
    assert "16 ans" in too_young.json()["fields"]["volunteer.birth_date"]

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
    assert invited.status_code == 201 and "token" not in invited.json()  # the token travels only by e-mail
    mailbox = gateway.mailbox

    async def delivered() -> bool:
        return bool(await mailbox.find(MAILBOX, {"to": "lea@prefecture.fr"}))

    await eventually(delivered, what="the invitation e-mail in the local mailbox")
    letter = (await mailbox.find(MAILBOX, {"to": "lea@prefecture.fr"}))[0]
    token = re.search(r"token=([\w-]+)", letter["text"]).group(1)
    assert "devenir référent" in letter["subject"]
    listing = await gateway.client.get("/notifications/mailbox")
    assert listing.status_code == 200 and "devenir référent" in listing.text
    page = await gateway.client.get(f"/notifications/mailbox/{letter['id']}")
    assert f"token={token}" in page.text and page.headers["content-type"].startswith("text/html")
    assert (await gateway.post(f"/referent-invitations/{token}/accept", json={"password": PASSWORD})).status_code == 201

    async def welcomed() -> bool:  # the new account announced: its address is known to notifications
        return bool(await mailbox.find("people", {"role": "referent"}))

    await eventually(welcomed, what="the referent's account announced")


async def test_a_forgotten_password_is_replaced_once_through_the_emailed_link(gateway):
    await gateway.accounts.create("Marie@Exemple.fr", PASSWORD, "manager")
    session = await gateway.login("marie@exemple.fr")
    known = await gateway.post("/auth/password-reset", json={"email": "marie@exemple.fr"})
    unknown = await gateway.post("/auth/password-reset", json={"email": "personne@exemple.fr"})
    assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()  # alike
    letters: list[dict] = []

    async def delivered() -> bool:
        letters[:] = await gateway.mailbox.find(MAILBOX, {"to": "marie@exemple.fr"})
        return any(letter["subject"] == "Choisir un nouveau mot de passe" for letter in letters)

    await eventually(delivered, what="the reset e-mail")
    reset = next(letter for letter in letters if letter["subject"] == "Choisir un nouveau mot de passe")
    token = re.search(r"/mot-de-passe/nouveau\?token=([\w-]+)", reset["text"]).group(1)
    assert not await gateway.mailbox.find(MAILBOX, {"to": "personne@exemple.fr"})
    new_password = "Nouvelle clef du potager 2026"
    weak = await gateway.post("/auth/password-reset/confirm", json={"token": token, "password": "motdepasse"})
    assert (weak.status_code, weak.json()["code"]) == (422, "weak_password")  # the link still serves
    done = await gateway.post("/auth/password-reset/confirm", json={"token": token, "password": new_password})
    assert done.status_code == 204
    assert (await gateway.login("marie@exemple.fr", new_password))["role"] == "manager"
    old = await gateway.post("/auth/login", json={"email": "marie@exemple.fr", "password": PASSWORD})
    assert old.status_code == 401
    ended = await gateway.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert (ended.status_code, ended.json()["code"]) == (401, "invalid_refresh_token")  # sessions before it end
    reused = {"token": token, "password": "Encore une autre 2026"}
    again = await gateway.post("/auth/password-reset/confirm", json=reused)
    assert (again.status_code, again.json()["code"]) == (410, "reset_invalid")


async def test_an_invitation_makes_a_referent_once_and_expires(gateway):
    admin = await gateway.admin()
    token = await gateway.invite(admin, "referente56@exemple.fr", ["56"])
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

    late = await gateway.invite(admin, "tard@exemple.fr", ["29"])
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
        path = "/api/v1" + route.path.format(
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
                failures.append(f"{route.method} {route.path} as {role}: {answer.status_code} {code}")
    # the endpoints the gateway answers itself
    custom = [
        ("POST", "/api/v1/missions/m/applications", {"volunteer"}, {}),
        ("POST", "/api/v1/referent-invitations", {"admin"}, {"email": "r@exemple.fr", "departments": ["56"]}),
        ("DELETE", "/api/v1/volunteers/v", {"volunteer", "admin"}, None),
    ]
    for method, path, allowed, body in custom:
        for role, token in tokens.items():
            answer = await gateway.client.request(method, path, headers=gateway.auth(token), json=body)
            code = answer.json().get("code") if answer.content else None
            if token is None:
                expected_ok = answer.status_code == 401
            elif role not in allowed:
                expected_ok = (answer.status_code, code) == (403, "role_not_allowed")
            else:  # the role may act; the service still checks the scope (someone else's profile: 403)
                expected_ok = answer.status_code != 401 and code != "role_not_allowed"
            if not expected_ok:
                failures.append(f"{method} {path} as {role}: {answer.status_code} {code}")
    assert failures == []


@contextlib.asynccontextmanager
async def platform(settings, **overrides):
    app = create_app(gateway_settings(settings, **overrides), SERVICES)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app, address: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://civique.test", headers=headers)


async def test_rate_limits_answer_429_with_retry_after(settings):
    limits = {"ip_rate_limit_per_minute": 5, "sensitive_rate_limit_per_minute": 2}
    async with platform(settings, **limits) as app, client_of(app, "10.0.0.2") as client:
        answers = [await client.get("/api/v1/departments/56/moderation") for _ in range(6)]
        assert [a.status_code for a in answers[:5]] == [200] * 5
        assert answers[5].status_code == 429 and int(answers[5].headers["retry-after"]) >= 1
        assert answers[5].json()["code"] == "too_many_requests"
        logins = [await client.post("/api/v1/auth/login", json={"email": "a@b.fr", "password": "x"}) for _ in range(3)]
        assert [a.status_code for a in logins] == [401, 401, 429]  # per e-mail


async def test_a_crowd_behind_one_address_signs_up_while_one_email_is_limited(settings):
    """CGNAT, companies, schools: many people share an address during a national announcement."""
    async with (
        platform(
            settings,
            sensitive_rate_limit_per_minute=2,
            sensitive_ip_limit_per_minute=1000,
            sign_up_limit_per_second=1000,
        ) as app,
        client_of(app, "10.0.0.3") as crowd,
    ):
        sign_ups = [
            await crowd.post(
                "/api/v1/volunteers",
                json={"password": PASSWORD, "volunteer": {**VOLUNTEER, "email": f"personne{n}@exemple.fr"}},
            )
            for n in range(30)
        ]
        assert {a.status_code for a in sign_ups} == {202}
        logins = [
            await crowd.post("/api/v1/auth/login", json={"email": f"p{n}@exemple.fr", "password": "faux"})
            for n in range(10)
        ]
        assert {a.status_code for a in logins} == {401}  # different people, not locked out together
        same = [
            await crowd.post("/api/v1/auth/login", json={"email": "cible@exemple.fr", "password": "faux"})
            for _ in range(3)
        ]
        assert [a.status_code for a in same] == [401, 401, 429]


def test_a_sweep_of_the_rate_limits_forgets_no_key_still_inside_its_window(monkeypatch):
    """Sign-ups check a 1 s ceiling between their 60 s limits: a sweep run by that check keeps the others."""
    limiter, moment = RateLimiter(), [1000.0]
    monkeypatch.setattr(RateLimiter, "SWEEP_EVERY", 4)
    monkeypatch.setattr(edge.time, "monotonic", lambda: moment[0])
    limiter.check("email:sign_up:a@b.fr", 1)
    moment[0] += 5
    for _ in range(3):
        limiter.check("intake:sign_up", 1000, window=1.0)  # the fourth check of all sweeps
    assert "email:sign_up:a@b.fr" in limiter.hits
    with pytest.raises(Problem):
        limiter.check("email:sign_up:a@b.fr", 1)
    moment[0] += 61
    limiter.check("email:sign_up:a@b.fr", 1)


async def test_a_forged_forwarded_header_changes_nothing_and_a_trusted_proxy_is_believed(settings):
    async with platform(settings, ip_rate_limit_per_minute=3, trusted_proxies="10.9.0.0/16") as app:
        async with client_of(app, "203.0.113.7") as stranger:
            answers = [
                await stranger.get("/api/v1/departments/56/moderation", headers={"x-forwarded-for": f"198.51.100.{n}"})
                for n in range(4)
            ]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]  # one client, whatever it claims
        async with client_of(app, "10.9.0.1") as ingress:
            answers = [
                await ingress.get(
                    "/api/v1/departments/56/moderation",
                    headers={"x-forwarded-for": f"spoofed, 198.51.100.{n}, 10.9.0.2"},
                )
                for n in range(4)
            ]
            assert {a.status_code for a in answers} == {200}  # four clients behind the load balancer
            again = [
                await ingress.get("/api/v1/departments/56/moderation", headers={"x-forwarded-for": "198.51.100.0"})
                for _ in range(3)
            ]
            assert [a.status_code for a in again] == [200, 200, 429]  # the first one's fourth request


BAD_PROFILES = [
    ({"domains": "keeping_in_touch"}, "volunteer.domains"),
    ({"birth_date": "12/04/1990"}, "volunteer.birth_date"),
    ({"nickname": "Lulu"}, "volunteer.nickname"),
    ({"email": {"$ne": None}}, "volunteer.email"),
    ({"email": "pas-une-adresse"}, "volunteer.email"),
    ({"postal_code": "99999"}, "volunteer.postal_code"),
    ({"postal_code": "5600"}, "volunteer.postal_code"),
    ({"birth_date": "2090-01-01"}, "volunteer.birth_date"),
    ({"last_name": "A" * 10_000}, "volunteer.last_name"),
    ({"phone": "01 23 45 67 89"}, "volunteer.phone"),
]


@pytest.mark.parametrize(("change", "field"), BAD_PROFILES, ids=[f for _, f in BAD_PROFILES])
async def test_a_sign_up_that_could_never_succeed_is_refused_before_the_202(gateway, change, field):
    before = accepted_sign_ups()
    answer = await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": {**VOLUNTEER, **change}})
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request"), answer.text
    assert field in answer.json()["fields"] and answer.json()["detail"].startswith("Certaines informations")
    assert accepted_sign_ups() == before


async def test_sign_up_bodies_over_the_limit_and_malformed_json_are_refused(gateway):
    huge = await gateway.post(
        "/volunteers", json={"password": PASSWORD, "volunteer": {**VOLUNTEER, "first_name": "A" * 2_000_000}}
    )
    assert (huge.status_code, huge.json()["code"]) == (413, "payload_too_large")
    broken = await gateway.client.post(
        "/api/v1/volunteers", content=b'{"password": "x", "volunteer": {', headers={"content-type": "application/json"}
    )
    assert (broken.status_code, broken.json()["code"]) == (400, "malformed_json")
    assert list(broken.json()["fields"]) == ["body"]  # not a character offset


async def streamed_over_the_limit():
    yield b'{"password": "' + b"x" * 40_000
    yield b"x" * 40_000 + b'", "volunteer": {}}'


JSON_BODY = {"content-type": "application/json"}
SIGN_UP_REFUSALS = {
    "invalid profile": lambda: {"json": {"password": PASSWORD, "volunteer": {**VOLUNTEER, "birth_date": "2090-01-01"}}},
    "unknown field": lambda: {"json": {"password": PASSWORD, "volunteer": {**VOLUNTEER, "nickname": "Lulu"}}},
    "weak password": lambda: {"json": {"password": "azertyuiop", "volunteer": VOLUNTEER}},
    "malformed JSON": lambda: {
        "content": b'{"password": "x", "volunteer": {',
        "headers": {"content-type": "application/json"},
    },
    "empty body": lambda: {"content": b"", "headers": {"content-type": "application/json; charset=utf-8"}},
    "a list": lambda: {"json": [VOLUNTEER]},
    "a form": lambda: {"data": {"password": PASSWORD}},
    "no content type": lambda: {"content": b'{"password": "x"}'},
    "streamed over the limit": lambda: {
        "content": streamed_over_the_limit(),
        "headers": {"content-type": "application/json"},
    },
}


def sign_ups_timed(status: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "civique_http_request_seconds_count", {"method": "POST", "route": "/volunteers", "status": status}
        )
        or 0.0
    )


async def test_sign_ups_go_straight_to_their_route_once_learnt_and_are_answered_alike(gateway, monkeypatch):
    """DirectRoutes learns the sign-up route from its first request, and hands it the next ones past FastAPI's
    routing (ADR 0010): a plain one is accepted there, anything else is answered by the regular path."""

    async def answers() -> dict:
        found = {}
        for name, request in SIGN_UP_REFUSALS.items():
            answer = await gateway.client.post("/api/v1/volunteers", **request())
            found[name] = (answer.status_code, answer.json(), answer.headers["content-type"], sorted(answer.headers))
        return found

    with monkeypatch.context() as unlearnt:
        unlearnt.setattr(DirectRoutes, "_learn", lambda self, scope: None)
        regular = await answers()
    assert regular["streamed over the limit"][0] != 202 and regular["weak password"][1]["code"] == "weak_password"
    straight = []
    direct = SignUpRoute.direct

    async def spied(self, *args) -> None:
        straight.append(1)
        await direct(self, *args)

    monkeypatch.setattr(SignUpRoute, "direct", spied)
    for _ in range(2):  # another method on the same path is never learnt: no sign-up by GET
        wrong = await gateway.client.request(
            "GET", "/api/v1/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER}
        )
        assert wrong.status_code == 405 and straight == []
    first = await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})
    assert first.status_code == 202 and straight == []  # the regular path, which DirectRoutes learns from
    assert await answers() == regular
    assert len(straight) == len(SIGN_UP_REFUSALS)

    before, timed = accepted_sign_ups(), sign_ups_timed("202")
    other = {**VOLUNTEER, "email": "lucie.bis@exemple.fr"}
    accepted = await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": other})
    assert len(straight) == len(SIGN_UP_REFUSALS) + 1
    assert accepted.status_code == 202 and accepted.json()["status"] == "pending"
    assert sorted(accepted.headers) == sorted(first.headers) and accepted.headers["content-type"] == "application/json"
    assert accepted_sign_ups() == before + 1 and sign_ups_timed("202") == timed + 1
    done = await gateway.finished(accepted.json()["request_id"])
    assert done["status"] == "done" and done["resource"]["account_id"] == done["resource"]["volunteer_id"]
    assert (await gateway.login("lucie.bis@exemple.fr"))["role"] == "volunteer"


async def test_a_learnt_sign_up_route_still_sheds_load_with_a_429(settings):
    async with platform(settings, sign_up_limit_per_second=2) as app, client_of(app, "10.0.0.5") as client:
        answers = [
            await client.post(
                "/api/v1/volunteers",
                json={"password": PASSWORD, "volunteer": {**VOLUNTEER, "email": f"vague{n}@exemple.fr"}},
            )
            for n in range(3)
        ]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[2].json()["code"] == "too_many_requests" and int(answers[2].headers["retry-after"]) >= 1
        assert answers[2].headers["content-type"] == "application/problem+json"


async def test_a_refused_organisation_registration_creates_no_account_and_sends_nothing(gateway):
    refused = [
        {**ORGANIZATION, "siret": "12345678901234", "rna": None},
        {**ORGANIZATION, "postal_code": "99999"},
        {**ORGANIZATION, "motto": "inconnu"},
        {**ORGANIZATION, "name": "N" * 10_000},
        {**ORGANIZATION, "rna": None},
    ]
    for n, organization in enumerate(refused):
        email = f"responsable{n}@exemple.fr"
        answer = await gateway.post(
            "/organizations", json={"account": {"email": email, "password": PASSWORD}, "organization": organization}
        )
        assert answer.status_code == 422, (organization, answer.text)
        assert await gateway.accounts.by_email(email) is None
        login = await gateway.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 401
    registered = await gateway.post(
        "/organizations",
        json={"account": {"email": "responsable@exemple.fr", "password": PASSWORD}, "organization": ORGANIZATION},
    )
    assert registered.status_code == 201, registered.text

    async def welcomed() -> bool:  # the accepted one is announced; it is the only welcome in the mailbox
        return bool(await gateway.mailbox.find(MAILBOX, {"to": "responsable@exemple.fr"}))

    await eventually(welcomed, what="the welcome e-mail of the registered manager")
    assert {m["to"] for m in await gateway.mailbox.find(MAILBOX)} == {"responsable@exemple.fr"}


async def test_a_volunteer_erases_their_account_through_the_public_api(gateway):
    done = await gateway.finished(
        (await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})).json()["request_id"]
    )
    volunteer_id = done["resource"]["volunteer_id"]
    tokens = await gateway.login(VOLUNTEER["email"])
    await gateway.accounts.create("autre@exemple.fr", PASSWORD, "volunteer")
    other = (await gateway.login("autre@exemple.fr"))["access_token"]
    assert (
        await gateway.client.delete(f"/api/v1/volunteers/{volunteer_id}", headers=gateway.auth(other))
    ).status_code == 403

    erased = await gateway.client.delete(
        f"/api/v1/volunteers/{volunteer_id}", headers=gateway.auth(tokens["access_token"])
    )
    assert erased.status_code == 204 and "content-type" not in erased.headers
    login = await gateway.post("/auth/login", json={"email": VOLUNTEER["email"], "password": PASSWORD})
    assert (login.status_code, login.json()["code"]) == (401, "invalid_credentials")
    refresh = await gateway.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    for path in (f"/volunteers/{volunteer_id}", f"/volunteers/{volunteer_id}/export"):
        assert (await gateway.get(path, tokens["access_token"])).status_code in (404, 410), path
    again = await gateway.client.delete(
        f"/api/v1/volunteers/{volunteer_id}", headers=gateway.auth(await gateway.admin())
    )
    assert again.status_code in (404, 410)
    history = await gateway.app.state.runtime.context("volunteers").store.read(volunteer_id)
    assert VOLUNTEER["last_name"] not in str([e.model_dump() for e in history])  # crypto-shredded


async def test_answers_without_content_say_no_content_type(gateway):
    await gateway.accounts.create("m@exemple.fr", PASSWORD, "manager")
    tokens = await gateway.login("m@exemple.fr")
    logout = await gateway.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert logout.status_code == 204 and "content-type" not in logout.headers and logout.content == b""
    done = await gateway.finished(
        (await gateway.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})).json()["request_id"]
    )
    volunteer = await gateway.login(VOLUNTEER["email"])
    patched = await gateway.client.patch(
        f"/api/v1/volunteers/{done['resource']['volunteer_id']}",
        headers=gateway.auth(volunteer["access_token"]),
        json={"max_distance_km": 20},
    )
    assert patched.status_code == 204 and "content-type" not in patched.headers


async def test_a_sign_up_answers_503_at_once_when_the_bus_is_away_and_a_retry_keeps_its_request_id(servers, tmp_path):
    """Kafka only: the embedded bus is the process's own SQLite file, it cannot be away."""
    settings = make_settings("kafka+mongo", tmp_path, servers)
    with socket.socket() as closed:  # a port nobody listens on: the broker is down
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    away = settings.model_copy(update={"kafka_bootstrap_servers": dead, "run_consumers": False})
    async with platform(away, intake_publish_timeout_s=1.0) as app, client_of(app, "10.0.0.4") as client:
        body = {"password": PASSWORD, "volunteer": VOLUNTEER}
        answer = await client.post("/api/v1/volunteers", json=body, headers={"idempotency-key": "k-503"})
        assert (answer.status_code, answer.json()["code"]) == (503, "intake_unavailable")
        assert int(answer.headers["retry-after"]) >= 1 and "réessayez" in answer.json()["detail"]
        plain = await client.post("/api/v1/volunteers", json=body)  # straight to the learnt route (ADR 0010)
        assert (plain.status_code, plain.json(), plain.headers["retry-after"]) == (503, answer.json(), "5")
    async with platform(settings) as app, client_of(app, "10.0.0.4") as client:
        retried = await client.post("/api/v1/volunteers", json=body, headers={"idempotency-key": "k-503"})
        assert retried.status_code == 202
        scope = hashlib.sha256(b"10.0.0.4\n/api/v1/volunteers\nk-503").hexdigest()
        assert retried.json()["request_id"] == domain.signed_request_id(JWT_SECRET, seed=scope)


async def test_an_unsubscribe_link_through_the_public_api_asks_before_acting(gateway):
    from services.notifications.domain import unsubscribe_token

    await gateway.accounts.create("lea@exemple.fr", PASSWORD, "volunteer")
    tokens = await gateway.login("lea@exemple.fr")
    link = f"/api/v1/notifications/unsubscribe?token={unsubscribe_token('test-links', tokens['account_id'], 'news')}"
    page = await gateway.client.get(link, headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store" and "<button" in page.text
    preferences = await gateway.get("/notifications/preferences", tokens["access_token"])
    assert preferences.json()["unsubscribed"] == []  # opening the link changed nothing
    confirmed = await gateway.client.post(link, headers={"accept": "text/html,application/xhtml+xml"})
    assert confirmed.status_code == 200 and confirmed.headers["content-type"].startswith("text/html")
    preferences = await gateway.get("/notifications/preferences", tokens["access_token"])
    assert preferences.json()["unsubscribed"] == ["news"]


async def test_a_sign_up_waits_out_an_unreachable_volunteers_service_instead_of_being_dead_lettered(settings):
    """The gateway apart from the services, the volunteers service down: the command stays pending."""
    from services.gateway import service as gateway_service

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    app = create_app(gateway_settings(settings, volunteers_url=down), [gateway_service])

    def waited() -> float:
        labels = {"group": "gateway.intake", "topic": "gateway.intake", "outcome": "outage_retried"}
        return REGISTRY.get_sample_value("civique_events_consumed_total", labels) or 0.0

    before = waited()
    async with app.router.lifespan_context(app), client_of(app, "10.0.0.5") as client:
        accepted = await client.post("/api/v1/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER})
        assert accepted.status_code == 202
        attempts = app.state.runtime.settings.consumer_max_attempts

        async def beyond_the_attempts_of_a_bug() -> bool:
            return waited() - before > attempts

        await eventually(beyond_the_attempts_of_a_bug, what="the intake worker waiting the service out")
        status = (await client.get(f"/api/v1/requests/{accepted.json()['request_id']}")).json()
        assert status["status"] == "pending"
