"""The referents' space (the moderation service's pages) over HTTP, on both backends: territorial scoping role by
role (anonymous → the login page; a volunteer, a manager → 403; a referent of 56 → nothing of 29, by any page,
URL, filter, export or form; an admin → everything), and the decisions of a referent of 29 shown at once."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from services.__main__ import SERVICES
from services.gateway.handlers import Accounts
from services.moderation.handlers import ModerationHandlers
from shared.runtime.app import create_app
from shared.runtime.mail import MAILBOX
from shared.web.sessions import COOKIE, SessionCodec
from tests.conftest import BACKENDS, NO_RATE_LIMITS, eventually, make_settings

BROWSER = {"accept": "text/html,application/xhtml+xml"}
PASSWORD = "Cerf-volant bleu 2026 !"
ORGANIZATION = "Secours de Quimper"
MISSION = "Maraude du soir à Quimper"


@dataclass
class Scene:
    app: object
    api: httpx.AsyncClient
    organization_id: str
    mission_id: str

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://civique.test")

    @asynccontextmanager
    async def signed_in(self, email: str) -> AsyncIterator[httpx.AsyncClient]:
        """A browser whose session is logged in through the site's login page."""
        async with self.browser() as browser:
            page = await browser.get("/connexion", headers=BROWSER)
            sent = await browser.post(
                "/connexion",
                data={"csrf_token": form_token(page), "email": email, "password": PASSWORD},
                headers=BROWSER,
            )
            assert sent.status_code == 303, sent.text
            yield browser


def form_token(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


@pytest.fixture(params=BACKENDS)
async def scene(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Scene]:
    """The platform with an admin, referents of 29 and of 56, a volunteer, and an organisation of Quimper (29)
    waiting with a mission submitted."""
    servers = request.getfixturevalue("servers") if request.param == "kafka+mongo" else None
    settings = make_settings(
        request.param, tmp_path, servers, link_secret="test-links", jwt_secret="j" * 40, **NO_RATE_LIMITS
    )
    app = create_app(settings, SERVICES)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test/api/v1") as api:
            accounts = app.state.runtime.context("gateway").component(Accounts)
            admin = await accounts.create("admin@exemple.fr", PASSWORD, "admin")
            admin_headers = {"authorization": f"Bearer {(await accounts.issue(admin))['access_token']}"}
            for email, department in (("referent.29@exemple.fr", "29"), ("referent.56@exemple.fr", "56")):
                referent = await accounts.create(email, PASSWORD, "referent")
                appointed = await api.put(
                    f"/referents/{referent['id']}", json={"departments": [department]}, headers=admin_headers
                )
                assert appointed.status_code == 204, appointed.text
            await accounts.create("benevole@exemple.fr", PASSWORD, "volunteer")
            registered = await api.post(
                "/organizations",
                json={
                    "account": {"email": "responsable@exemple.fr", "password": PASSWORD},
                    "organization": {
                        "name": ORGANIZATION,
                        "kind": "association",
                        "rna": "W291000555",
                        "postal_code": "29000",
                    },
                },
            )
            assert registered.status_code == 201, registered.text
            organization_id = registered.json()["organization_id"]
            login = await api.post("/auth/login", json={"email": "responsable@exemple.fr", "password": PASSWORD})
            manager = {"authorization": f"Bearer {login.json()['access_token']}"}
            drafted = await api.post(
                f"/organizations/{organization_id}/missions",
                headers=manager,
                json={
                    "title": MISSION,
                    "description": "Aller à la rencontre des personnes sans abri avec un repas chaud.",
                    "domain": "food_and_emergency_aid",
                    "remote": True,
                    "places": 3,
                },
            )
            assert drafted.status_code == 201, drafted.text
            mission_id = drafted.json()["mission_id"]
            submitted = await api.post(f"/missions/{mission_id}/submit", headers=manager)
            assert submitted.status_code == 204, submitted.text
            documents = app.state.runtime.context("moderation").documents

            async def queued() -> bool:
                return all([await documents.get("queue", mission_id), await documents.get("queue", organization_id)])

            await eventually(queued, what="the organisation and the mission in the referents' queue")
            yield Scene(app, api, organization_id, mission_id)


async def test_each_role_sees_only_what_it_may(scene: Scene) -> None:
    mission, organization = (
        f"/moderation/missions/{scene.mission_id}",
        f"/moderation/organizations/{scene.organization_id}",
    )
    pages = ("/moderation", "/moderation/missions", mission, organization, "/departements/29/territoire")

    async with scene.browser() as anonymous:
        for path in pages:
            answer = await anonymous.get(path, headers=BROWSER)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/connexion?suite="), path

    for email in ("benevole@exemple.fr", "responsable@exemple.fr"):
        async with scene.signed_in(email) as other_role:
            for path in (*pages, "/moderation/missions.csv"):
                answer = await other_role.get(path, headers=BROWSER)
                assert answer.status_code == 403 and "Accès réservé" in answer.text, (email, path)

    async with scene.signed_in("referent.56@exemple.fr") as stranger:
        for path in (mission, organization, "/departements/29/territoire", "/moderation/missions?departement=29"):
            answer = await stranger.get(path, headers=BROWSER)
            assert answer.status_code == 403, path
            assert "Vous n’êtes pas référent de ce département." in answer.text, path
        for path in ("/moderation", "/moderation/missions?etat=", "/moderation/organizations?etat="):
            answer = await stranger.get(path, headers=BROWSER)
            assert answer.status_code == 200 and MISSION not in answer.text and ORGANIZATION not in answer.text, path
        export = await stranger.get("/moderation/missions.csv?etat=", headers=BROWSER)
        assert export.status_code == 200 and MISSION not in export.text
        token = form_token(await stranger.get("/moderation", headers=BROWSER))
        forced = await stranger.post(
            mission, data={"csrf_token": token, "decision": "validate", "comment": ""}, headers=BROWSER
        )
        assert forced.status_code == 403
        bulk = await stranger.post(
            "/moderation/missions", data={"csrf_token": token, "missions": scene.mission_id}, headers=BROWSER
        )
        assert bulk.status_code == 303
        home = await stranger.get("/moderation", headers=BROWSER)
        assert "Vous n’êtes pas référent de ce département." in home.text  # told, and nothing decided
        assert MISSION not in home.text

    async with scene.signed_in("admin@exemple.fr") as admin:
        for path in pages:
            assert (await admin.get(path, headers=BROWSER)).status_code == 200, path

    async with scene.signed_in("referent.29@exemple.fr") as referent:
        page = await referent.get(mission, headers=BROWSER)
        assert page.status_code == 200 and "En attente de validation" in page.text


async def test_a_referent_decides_and_sees_the_new_state_at_once(scene: Scene) -> None:
    mission, organization = (
        f"/moderation/missions/{scene.mission_id}",
        f"/moderation/organizations/{scene.organization_id}",
    )
    async with scene.signed_in("referent.29@exemple.fr") as referent:
        home = await referent.get("/moderation", headers=BROWSER)
        assert home.status_code == 200 and MISSION in home.text and ORGANIZATION in home.text
        token = form_token(home)

        refused = await referent.post(mission, data={"csrf_token": token, "decision": "refuse"}, headers=BROWSER)
        assert refused.status_code == 422 and "Choisissez le motif du refus." in refused.text
        sent_back = await referent.post(
            mission, data={"csrf_token": token, "decision": "request_changes"}, headers=BROWSER
        )
        assert sent_back.status_code == 422 and "Expliquez les modifications attendues." in sent_back.text
        unknown = await referent.get("/departements/99/territoire", headers=BROWSER)
        assert unknown.status_code == 404 and "Page introuvable" in unknown.text

        approved = await referent.post(organization, data={"csrf_token": token, "decision": "approve"}, headers=BROWSER)
        assert approved.status_code == 303
        page = await referent.get(organization, headers=BROWSER)
        assert (
            "Validée" in page.text
            and "Décision enregistrée" in page.text
            and "Enregistrer la décision" not in page.text
        )

        validated = await referent.post(
            mission, data={"csrf_token": token, "decision": "validate", "comment": "Merci !"}, headers=BROWSER
        )
        assert validated.status_code == 303
        page = await referent.get(mission, headers=BROWSER)
        assert "Validée" in page.text and "« Merci ! »" in page.text and "par vous" in page.text

        export = await referent.get("/moderation/missions.csv?etat=validated", headers=BROWSER)
        assert export.headers["content-type"].startswith("text/csv")
        lines = export.content.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("Identifiant;Mission;Structure") and MISSION in lines[1] and ORGANIZATION in lines[1]
        territory = await referent.get("/departements/29/territoire", headers=BROWSER)
        assert territory.status_code == 200 and "Finistère" in territory.text


async def test_missions_ticked_in_the_queue_are_validated_together(scene: Scene) -> None:
    async with scene.signed_in("referent.29@exemple.fr") as referent:
        queue = await referent.get("/moderation/missions?departement=29&texte=maraude", headers=BROWSER)
        assert queue.status_code == 200 and f'value="{scene.mission_id}"' in queue.text
        back = "/moderation/missions?departement=29&etat=pending"
        sent = await referent.post(
            "/moderation/missions",
            data={"csrf_token": form_token(queue), "missions": [scene.mission_id], "retour": back},
            headers=BROWSER,
        )
        assert sent.status_code == 303 and sent.headers["location"] == back
        shown = await referent.get(back, headers=BROWSER)
        assert "1 mission validée." in shown.text and MISSION not in shown.text
        validated = await referent.get("/moderation/missions?etat=validated", headers=BROWSER)
        assert MISSION in validated.text


@pytest.mark.parametrize("scene", ["embedded"], indirect=True)  # the session's checks know no backend
async def test_the_pages_trust_the_gateways_token_not_the_cookie_alone(scene: Scene) -> None:
    codec = SessionCodec("test-links")
    async with scene.signed_in("referent.29@exemple.fr") as referent:
        session = codec.decode(referent.cookies.get(COOKIE))
    assert session is not None and session.signed_in is not None
    moment = datetime.now(UTC)
    claims = {"sub": session.signed_in.account_id, "role": "referent", "exp": moment - timedelta(minutes=1)}
    expired = session.model_copy(deep=True)
    expired.signed_in.access_token = jwt.encode(claims, "j" * 40, algorithm="HS256")  # type: ignore[union-attr]
    forged = session.model_copy(deep=True)
    forged.signed_in.access_token = jwt.encode(  # type: ignore[union-attr]
        claims | {"role": "admin", "exp": moment + timedelta(minutes=5)},
        "a key that is not the gateway's, though long enough",
        "HS256",
    )
    async with scene.browser() as browser:
        renewed = await browser.get("/moderation", headers=BROWSER | {"cookie": f"{COOKIE}={codec.encode(expired)}"})
        assert renewed.status_code == 200 and "À traiter" in renewed.text  # renewed through the gateway
        again = codec.decode(renewed.cookies.get(COOKIE))
        assert again is not None and again.signed_in is not None
        assert again.signed_in.access_token != expired.signed_in.access_token  # type: ignore[union-attr]
    async with scene.browser() as browser:
        refused = await browser.get("/moderation", headers=BROWSER | {"cookie": f"{COOKIE}={codec.encode(forged)}"})
        assert refused.status_code == 303 and refused.headers["location"].startswith("/connexion")


# ---- broadcasts and administration (the notifications' and the gateway's operations, through the public API) ----

VOLUNTEER_29 = {
    "first_name": "Lucie",
    "last_name": "Aubrac",
    "email": "lucie.aubrac@exemple.fr",
    "phone": "06 11 22 33 44",
    "birth_date": "1990-07-29",
    "postal_code": "29000",
    "domains": ["keeping_in_touch"],
    "availability": ["evenings"],
}


async def test_a_referent_previews_sends_a_broadcast_and_reads_its_report(scene: Scene) -> None:
    signed_up = await scene.api.post("/volunteers", json={"password": PASSWORD, "volunteer": VOLUNTEER_29})
    assert signed_up.status_code == 202, signed_up.text
    people = scene.app.state.runtime.context("notifications").documents

    async def known() -> bool:
        return bool(await people.find("people", {"department": "29", "role": "volunteer"}))

    await eventually(known, what="the volunteer of 29 known to the notifications service")
    message = "/departements/29/message"
    async with scene.signed_in("referent.29@exemple.fr") as referent:
        page = await referent.get(message, headers=BROWSER)
        assert page.status_code == 200 and "<strong>1</strong> bénévole destinataire" in page.text
        token = form_token(page)
        too_short = await referent.post(
            message, data={"csrf_token": token, "subject": "Hé", "body": "", "action": "apercu"}, headers=BROWSER
        )
        assert too_short.status_code == 422 and "Le formulaire contient 2 erreurs" in too_short.text
        letter = {"csrf_token": token, "subject": "Collecte samedi", "body": "Bonjour,\n\nUne collecte a lieu samedi."}
        preview = await referent.post(message, data={**letter, "action": "apercu"}, headers=BROWSER)
        assert preview.status_code == 200 and "Aperçu" in preview.text and "Envoyer à 1 bénévole" in preview.text
        sent = await referent.post(message, data={**letter, "action": "envoyer"}, headers=BROWSER)
        assert sent.status_code == 303 and sent.headers["location"].startswith("/moderation/messages/"), sent.text
        report = await referent.get(sent.headers["location"], headers=BROWSER)
        assert report.status_code == 200 and "Message envoyé" in report.text and "Collecte samedi" in report.text
        assert re.search(r"Destinataires</th><td>1<", report.text), report.text
        report_url = sent.headers["location"]
        again = await referent.post(message, data={**letter, "action": "envoyer"}, headers=BROWSER)
        assert again.headers["location"] == report_url  # sent twice (a double click): one broadcast

    async with scene.signed_in("referent.56@exemple.fr") as stranger:
        for answer in (
            await stranger.get(message, headers=BROWSER),
            await stranger.post(message, data={**letter, "action": "envoyer"}, headers=BROWSER),
            await stranger.get(report_url, headers=BROWSER),
        ):
            assert answer.status_code == 403, answer.text
        assert "Vous n’êtes pas référent de ce département." in (await stranger.get(message, headers=BROWSER)).text


async def test_an_admin_invites_a_referent_sets_a_policy_and_revokes(scene: Scene) -> None:
    admin_pages = ("/moderation/administration", "/moderation/administration/echecs")
    async with scene.signed_in("referent.29@exemple.fr") as referent:
        for path in admin_pages:
            answer = await referent.get(path, headers=BROWSER)
            assert answer.status_code == 403 and "Accès réservé" in answer.text, path
        home = await referent.get("/moderation", headers=BROWSER)
        assert "/moderation/administration" not in home.text
        invited = await referent.post(
            "/moderation/administration/invitation",
            data={"csrf_token": form_token(home), "email": "x@exemple.fr", "departments": "29"},
            headers=BROWSER,
        )
        assert invited.status_code == 403

    async with scene.signed_in("admin@exemple.fr") as admin:
        page = await admin.get("/moderation/administration", headers=BROWSER)
        assert page.status_code == 200 and "Finistère (29)" in page.text and "Morbihan (56)" in page.text
        token = form_token(page)
        wrong = await admin.post(
            "/moderation/administration/invitation",
            data={"csrf_token": token, "email": "lea@prefecture.fr", "departments": "29, 999"},
            headers=BROWSER,
        )
        assert wrong.status_code == 422 and "Département inconnu : 999." in wrong.text
        invited = await admin.post(
            "/moderation/administration/invitation",
            data={"csrf_token": token, "email": "Lea@Prefecture.fr", "departments": "29, 56"},
            headers=BROWSER,
        )
        assert invited.status_code == 303, invited.text
        mailbox = scene.app.state.runtime.context("notifications").documents

        async def delivered() -> bool:
            return bool(await mailbox.find(MAILBOX, {"to": "lea@prefecture.fr"}))

        await eventually(delivered, what="the invitation e-mail in the local mailbox")

        changed = await admin.post(
            "/moderation/administration/politique",
            data={"csrf_token": token, "department": "29", "policy": "post"},
            headers=BROWSER,
        )
        assert changed.status_code == 303
        shown = await admin.get("/moderation/administration", headers=BROWSER)
        assert (
            "Invitation envoyée à Lea@Prefecture.fr (29, 56)." in shown.text
            and "Finistère (29) : validation après" in shown.text
        )
        handlers = scene.app.state.runtime.context("moderation").component(ModerationHandlers)
        assert (await handlers.policy("29")).policy == "post"
        assert "Validation après publication : Finistère (29)." in shown.text

        failures = await admin.get("/moderation/administration/echecs", headers=BROWSER)
        assert failures.status_code == 200 and "E-mails non distribués" in failures.text

        rows = re.findall(r"<td>([\w-]+)</td>\s*<td>([^<]*)</td>", shown.text)
        (referent_56_id,) = [account for account, departments in rows if "(56)" in departments]
        revoked = await admin.post(
            f"/moderation/administration/referents/{referent_56_id}/revocation",
            data={"csrf_token": token},
            headers=BROWSER,
        )
        assert revoked.status_code == 303
        assert "Morbihan (56)" not in (await admin.get("/moderation/administration", headers=BROWSER)).text

    async with scene.signed_in("referent.56@exemple.fr") as revoked_referent:
        answer = await revoked_referent.get("/departements/56/territoire", headers=BROWSER)
        assert answer.status_code == 403
