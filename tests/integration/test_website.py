"""The website's pages over HTTP, in process on the embedded backend: the brand setting, the security headers and
the session cookie's flags, forms refused without their token, French error pages for browsers while the API
keeps its JSON problems."""

import re

import httpx
import pytest

from services.__main__ import SERVICES
from shared.runtime.app import create_app
from tests.conftest import make_settings

BROWSER = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def site(tmp_path, request):
    overrides = getattr(request, "param", {})
    settings = make_settings("embedded", tmp_path, None, link_secret="test-links", jwt_secret="j" * 40, **overrides)
    app = create_app(settings, SERVICES)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://civique.test") as client:
            client.runtime = app.state.runtime  # type: ignore[attr-defined]  # for the tests that look inside
            yield client


async def test_pages_carry_a_strict_policy_and_an_httponly_lax_cookie(site) -> None:
    home = await site.get("/", headers=BROWSER)
    assert home.status_code == 200 and 'lang="fr"' in home.text and 'class="fr-logo"' in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert "<script>" not in home.text and " style=" not in home.text  # nothing inline
    cookie = home.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    docs = await site.get("/docs")
    assert "content-security-policy" not in docs.headers  # Swagger UI's inline scripts keep working


@pytest.mark.parametrize("site", [{"brand": "neutral", "public_url": "https://benevolat.example.org"}], indirect=True)
async def test_the_neutral_brand_shows_no_state_mark_and_the_cookie_is_secure_on_https(site) -> None:
    home = await site.get("/", headers=BROWSER)
    assert 'class="fr-logo"' not in home.text and "République" not in home.text
    assert "/static/civique/neutre.css" in home.text
    assert "Secure" in home.headers["set-cookie"]


async def test_a_form_without_its_token_is_refused_in_french(site) -> None:
    page = await site.get("/connexion", headers=BROWSER)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    forged = await site.post("/connexion", data={"email": "a@b.fr", "password": "x"}, headers=BROWSER)
    assert forged.status_code == 403 and "Formulaire expiré" in forged.text
    sent = await site.post(
        "/connexion", data={"csrf_token": token, "email": "a@b.fr", "password": "x"}, headers=BROWSER
    )
    assert sent.status_code == 422 and "E-mail ou mot de passe incorrect." in sent.text


async def test_browsers_get_french_error_pages_and_the_api_keeps_json(site) -> None:
    page = await site.get("/nulle-part", headers=BROWSER)
    assert (
        page.status_code == 404
        and "Page introuvable" in page.text
        and page.headers["content-type"].startswith("text/html")
    )
    mission = await site.get("/missions/inconnue", headers=BROWSER)
    assert mission.status_code == 404 and "Page introuvable" in mission.text
    for answer in (await site.get("/api/v1/nulle-part", headers=BROWSER), await site.get("/nulle-part")):
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
    signed_out = await site.get("/mon-espace", headers=BROWSER)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/connexion?suite=%2Fmon-espace"


async def test_a_forgotten_password_is_replaced_from_the_login_page_and_the_emailed_link(site) -> None:
    from services.gateway.handlers import Accounts
    from shared.runtime.mail import MAILBOX
    from tests.conftest import eventually

    runtime = site.runtime
    await runtime.context("gateway").component(Accounts).create("lina@exemple.fr", "Vieux mot de passe 1984", "manager")

    async def post(path: str, fields: dict[str, str]) -> httpx.Response:
        page = await site.get(path, headers=BROWSER)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        return await site.post(path.split("?")[0], data={"csrf_token": token, **fields}, headers=BROWSER)

    login = await site.get("/connexion", headers=BROWSER)
    assert 'href="/mot-de-passe-oublie"' in login.text
    asked = await post("/mot-de-passe-oublie", {"email": "lina@exemple.fr"})
    assert asked.status_code == 303 and asked.headers["location"] == "/connexion"
    assert "Si un compte existe avec cette adresse" in (await site.get("/connexion", headers=BROWSER)).text
    mailbox = runtime.context("notifications").documents
    letters: list[dict] = []

    async def delivered() -> bool:
        letters[:] = await mailbox.find(
            MAILBOX, {"to": "lina@exemple.fr", "subject": "Choisir un nouveau mot de passe"}
        )
        return bool(letters)

    await eventually(delivered, what="the reset e-mail")
    link = re.search(r"http://127\.0\.0\.1:8000(/mot-de-passe/nouveau\?token=[\w-]+)", letters[0]["text"]).group(1)  # type: ignore[union-attr]
    weak = await post(link, {"token": link.split("=", 1)[1], "password": "court"})
    assert weak.status_code == 422 and "10 caractères" in weak.text
    changed = await post(link, {"token": link.split("=", 1)[1], "password": "Nouvelle clef du jardin 2026"})
    assert changed.status_code == 303 and changed.headers["location"] == "/connexion"
    signed_in = await post("/connexion", {"email": "lina@exemple.fr", "password": "Nouvelle clef du jardin 2026"})
    assert signed_in.status_code == 303
    used = await post(link, {"token": link.split("=", 1)[1], "password": "Encore une autre clef 2026"})
    assert used.status_code == 422 and "déjà servi ou a expiré" in used.text


async def test_static_files_and_pages_are_gzipped_for_browsers_the_versioned_kept_a_year_not_the_api(site) -> None:
    gzip = {"accept-encoding": "gzip"}
    css = await site.get("/static/dsfr/dsfr.min.css", headers=gzip)
    assert css.status_code == 200 and css.headers["content-encoding"] == "gzip"
    assert len(css.content) > 500_000 and css.num_bytes_downloaded < len(css.content) / 4
    assert "immutable" not in css.headers.get("cache-control", "")  # unversioned: revalidated (ETag)
    home = await site.get("/", headers=BROWSER | gzip)
    assert home.headers["content-encoding"] == "gzip" and 'lang="fr"' in home.text
    versioned = re.search(r'href="(/static/dsfr/dsfr\.min\.css\?v=\w+)"', home.text).group(1)  # type: ignore[union-attr]
    kept = await site.get(versioned, headers=gzip)
    assert kept.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert kept.headers["content-encoding"] == "gzip"
    api = await site.get("/api/v1/search/missions", headers=gzip)
    assert api.status_code == 200 and "content-encoding" not in api.headers
