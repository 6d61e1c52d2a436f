"""Every link the e-mails carry opens a real page of the site (200, HTML; a page that needs an account leads to the
login page and back), never the API's JSON 404: the templates are walked, each link computed as the notifications
service computes it, and opened in Chromium. And the invitation e-mail's link, followed by the invited referent."""

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jinja2 import Environment
from playwright.sync_api import expect

from services.gateway.handlers import Accounts
from services.notifications.domain import unsubscribe_token
from tests.browser.conftest import PASSWORD, Browse, Platform

TEMPLATES = Path(__file__).parents[2] / "services" / "notifications" / "templates"
LINK = re.compile(r"link\((.+?),\s*\"[^\"]*\"\)")
PRINTED = re.compile(r"\{\{\s*([\w.]*url)\s*\}\}")

pytestmark = pytest.mark.parametrize("platform", ["embedded"], indirect=True)  # the pages, not the backends


def links_of_templates(context: dict[str, Any]) -> dict[str, set[str]]:
    """Each URL the templates make, with the templates that make it: `link(EXPRESSION, label)` and `{{ …url }}`,
    evaluated by Jinja with `context`."""
    env = Environment()
    found: dict[str, set[str]] = {}
    for template in sorted(TEMPLATES.glob("*.jinja")):
        source = template.read_text()
        for expression in [*LINK.findall(source), *PRINTED.findall(source)]:
            url = env.compile_expression(expression)(**context)
            found.setdefault(str(url), set()).add(template.stem)
    return found


def test_every_link_of_the_e_mails_opens_a_page(platform: Platform, browse: Browse) -> None:
    referent = platform.referent("referent.liens@exemple.fr", "56")
    _, organization_id, mission_id = platform.published_mission(referent, "responsable.liens@exemple.fr")
    base = platform.url
    mission_url = f"{base}/missions/{mission_id}"
    links = links_of_templates(
        {
            "public_url": base,
            "mission_id": mission_id,
            "organization_id": organization_id,
            "department": "56",
            "mission_url": mission_url,
            "invitation_url": f"{base}/referents/invitation?token=un-jeton-d-invitation",
            "reset_url": f"{base}/mot-de-passe/nouveau?token=un-jeton-de-lien",
            "unsubscribe_url": f"{base}/api/v1/notifications/unsubscribe?token="
            + unsubscribe_token(platform.settings.link_secret or "", "some-volunteer", "news"),
            "m": SimpleNamespace(url=mission_url),
            "item": SimpleNamespace(url=mission_url),
        }
    )
    assert len(links) >= 12, links  # every kind of link the templates hold today
    for url, templates in sorted(links.items()):
        answer = browse.page.goto(url)
        assert answer is not None, url
        assert answer.status == 200, f"{url} ({', '.join(sorted(templates))}): {answer.status}"
        assert "text/html" in answer.headers["content-type"], f"{url}: {answer.headers['content-type']}"
        if "/api/" not in url:  # the unsubscribe page is the notifications service's own
            browse.check(url.removeprefix(base))
            assert browse.page.locator("h1").count() == 1, url


def test_an_invited_referent_accepts_from_the_e_mail_then_logs_in(platform: Platform, browse: Browse) -> None:
    page = browse.page
    accounts = platform.app.state.runtime.context("gateway").component(Accounts)
    platform.run(accounts.create("admin@exemple.fr", PASSWORD, "admin"))
    admin = platform.login("admin@exemple.fr")
    platform.call(
        "POST", "/referent-invitations", admin, 201, json={"email": "referente.29@exemple.fr", "departments": ["29"]}
    )
    letter = platform.until(lambda: platform.mailbox("referente.29@exemple.fr"), "the invitation e-mail")[0]
    link = re.search(r"https?://\S+/referents/invitation\?token=[\w-]+", letter["text"])
    assert link is not None, letter["text"]

    page.goto(link.group(0))
    browse.check("invitation")
    page.get_by_label("Choisissez un mot de passe").fill("court")
    page.get_by_role("button", name="Accepter l’invitation").click()
    browse.check("invitation-mot-de-passe-refuse")
    expect(page.locator("#erreurs")).to_contain_text("au moins 10 caractères")
    page.get_by_label("Choisissez un mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Accepter l’invitation").click()
    page.wait_for_url("**/connexion")
    expect(page.get_by_text("Votre compte de référent est prêt (départements : 29)")).to_be_visible()
    page.get_by_label("Adresse e-mail").fill("referente.29@exemple.fr")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/moderation")
    browse.check("espace-referents")
    expect(page.get_by_role("heading", level=1)).to_have_text("À traiter")
