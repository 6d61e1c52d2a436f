"""The website in a real headless Chromium (Debian's, at /usr/bin/chromium: never a browser download), driven by
Playwright, against the whole platform served by uvicorn on a free port; once per module and backend.

Every page a test visits goes through `Browse.visit`: an axe check (no serious or critical violation), no
Content-Security-Policy violation in the console, and a screenshot in tests/browser/artifacts/.
"""

import asyncio
import re
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from services.__main__ import SERVICES
from services.gateway.handlers import Accounts
from shared.runtime.app import create_app
from shared.runtime.mail import MAILBOX
from shared.runtime.settings import Settings
from tests.conftest import BACKENDS, NO_RATE_LIMITS, free_port, lasting, make_settings, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "Cerf-volant bleu 2026 !"
SERIOUS = ("serious", "critical")
WITHIN_S = 30.0


class Platform:
    """The platform served by uvicorn in a thread of the test process, and the public API to set the scene."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings, SERVICES)
        self.url = settings.public_url
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False)
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)
        self.api = httpx.Client(base_url=f"{self.url}/api/v1", timeout=20)

    def __enter__(self) -> "Platform":
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), within=60, what="the platform's start")
        if not self.server.started:
            raise RuntimeError("the platform did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self.api.close()
        self.server.should_exit = True
        self.thread.join(30)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """A coroutine on the platform's own event loop (its stores live there)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    # ---- the public API, as the people around a volunteer use it ----

    def call(self, method: str, path: str, token: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        answer = self.api.request(method, path, headers=headers, **kwargs)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def eventually(self, method: str, path: str, token: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
        """The call, tried again until the services caught up with each other (read models fed by events)."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        seen: list[httpx.Response] = []

        def answered() -> bool:
            seen.append(self.api.request(method, path, headers=headers, **kwargs))
            return seen[-1].status_code == expect

        try:
            wait_until(answered, within=WITHIN_S, what=f"{method} {path} answering {expect}")
        except AssertionError:
            raise AssertionError(f"{method} {path}: still {seen[-1].status_code} {seen[-1].text}") from None
        return seen[-1].json() if seen[-1].content else None

    def until(self, check: Callable[[], Any], what: str) -> Any:
        return wait_until(check, within=WITHIN_S, what=what)

    def login(self, email: str) -> str:
        return str(self.call("POST", "/auth/login", json={"email": email, "password": PASSWORD})["access_token"])

    def mailbox(self, email: str) -> list[dict[str, Any]]:
        documents = self.app.state.runtime.context("notifications").documents
        found: list[dict[str, Any]] = self.run(documents.find(MAILBOX, {"to": email.lower()}))
        return found

    def referent(self, email: str, department: str) -> str:
        """A referent invited by the first admin, who accepted through the API: their access token."""
        accounts = self.app.state.runtime.context("gateway").component(Accounts)
        self.run(accounts.create("admin@exemple.fr", PASSWORD, "admin"))
        admin = self.login("admin@exemple.fr")
        self.call("POST", "/referent-invitations", admin, 201, json={"email": email, "departments": [department]})
        letters = self.until(lambda: self.mailbox(email), f"the invitation e-mail to {email}")
        token = re.search(r"token=([\w-]+)", letters[0]["text"]).group(1)  # type: ignore[union-attr]
        self.call("POST", f"/referent-invitations/{token}/accept", expect=201, json={"password": PASSWORD})
        return self.login(email)

    def volunteer(self, email: str, first_name: str) -> str:
        """A volunteer of Vannes signed up through the API (202, then carried out): their access token."""
        profile = {
            "first_name": first_name,
            "last_name": "Martin",
            "email": email,
            "phone": "06 12 34 56 78",
            "birth_date": "1985-03-14",
            "postal_code": "56000",
            "domains": ["food_and_emergency_aid"],
            "availability": ["weekends"],
        }
        accepted = self.call("POST", "/volunteers", expect=202, json={"password": PASSWORD, "volunteer": profile})
        self.until(lambda: self.call("GET", f"/requests/{accepted['request_id']}")["status"] == "done", "the sign-up")
        return self.login(email)

    def applied(self, volunteer: str, mission_id: str) -> None:
        accepted = self.call("POST", f"/missions/{mission_id}/applications", volunteer, 202, json={})
        self.until(
            lambda: self.call("GET", f"/requests/{accepted['request_id']}")["status"] == "done", "the application"
        )

    def published_mission(self, referent: str, manager_email: str, **change: Any) -> tuple[str, str, str]:
        """An organisation of Vannes approved by `referent`, and a mission it published: (manager's token,
        organisation id, mission id), once the search finds the mission."""
        registered = self.call(
            "POST",
            "/organizations",
            expect=201,
            json={
                "account": {"email": manager_email, "password": PASSWORD},
                "organization": {
                    "name": "Entraide Vannes",
                    "kind": "association",
                    "rna": "W561000777",
                    "postal_code": "56000",
                },
            },
        )
        organization_id = registered["organization_id"]
        self.eventually(
            "POST", f"/moderation/organizations/{organization_id}/decision", referent, 204, json={"decision": "approve"}
        )
        manager = self.login(manager_email)
        mission = {
            "title": "Distribution de colis alimentaires",
            "description": "Préparer et distribuer des colis aux familles du quartier de Ménimur.",
            "domain": "food_and_emergency_aid",
            "remote": False,
            "place": {"address": "12 rue du Port", "postal_code": "56000"},
            "places": 2,
            "end_date": (date.today() + timedelta(days=60)).isoformat(),
            "safety": {"distancing": True, "protective_equipment": True, "supervision": True},
        } | change
        mission_id = self.call("POST", f"/organizations/{organization_id}/missions", manager, 201, json=mission)[
            "mission_id"
        ]
        self.call("POST", f"/missions/{mission_id}/submit", manager, 204)
        self.eventually(
            "POST", f"/moderation/missions/{mission_id}/decision", referent, 204, json={"decision": "validate"}
        )
        self.until(
            lambda: any(
                m["id"] == mission_id
                for m in self.call("GET", "/search/missions", params={"postal_code": "56000"})["missions"]
            ),
            "the mission in the search",
        )
        return manager, organization_id, mission_id


@pytest.fixture(scope="module", params=BACKENDS)
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform on one backend, for every test of the module."""
    servers = request.getfixturevalue("servers") if request.param == "kafka+mongo" else None
    port = free_port()
    made = make_settings(
        request.param,
        tmp_path_factory.mktemp("platform"),
        servers,
        jwt_secret="a-test-secret-long-enough-for-hs256-keys",
        internal_token="test-internal",
        link_secret="test-links",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        map_tiles_url="",  # no tile server here: the map shows its markers alone
        mail_send_interval_s=0.05,
        **NO_RATE_LIMITS,
    )
    with lasting(made) as settings, Platform(settings) as started:
        yield started


# per module, not per session: Playwright's sync API runs an event loop in this thread while it is started, and
# the async tests of the modules that follow need it stopped
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: scripts/bootstrap installs Debian's chromium", pytrace=False)
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
    yield launched
    launched.close()


class Browse:
    """A browser tab on the site: each page visited is checked with axe and saved as a screenshot."""

    axe = Axe()

    def __init__(self, page: Page, platform: Platform, name: str, *, scripts: bool = True) -> None:
        self.page, self.platform, self.name, self.scripts = page, platform, name, scripts
        self.shots = 0
        self.console: list[str] = []
        page.on("console", self._listen)
        # nothing leaves this machine: only the platform's own address is reached
        page.route(re.compile(r"^(?!http://127\.0\.0\.1:\d+/).*"), lambda route: route.abort())

    def _listen(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def goto(self, path: str) -> None:
        self.page.goto(self.platform.url + path)
        self.check(path)

    def check(self, label: str) -> None:
        """The page shown now: axe finds no serious or critical violation, no CSP violation, a screenshot."""
        self.page.wait_for_load_state("load")
        if self.scripts:  # axe runs in the page
            results = self.axe.run(self.page)
            serious = [v for v in results.response["violations"] if v["impact"] in SERIOUS]
            assert not serious, f"{label}: " + "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in serious)
        blocked = [text for text in self.console if "Content Security Policy" in text]
        assert not blocked, f"{label}: {blocked}"
        self.shots += 1
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:60] or "accueil"
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"{self.name}-{self.shots:02d}-{slug}.png", full_page=True)


@pytest.fixture
def browse(browser: Browser, platform: Platform, request: pytest.FixtureRequest) -> Iterator[Browse]:
    """A fresh browser context (no cookie) on the platform, named after the test and the backend."""
    context = browser.new_context(locale="fr-FR", accept_downloads=True)
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    yield Browse(context.new_page(), platform, name)
    context.close()


@pytest.fixture
def browse_without_scripts(browser: Browser, platform: Platform, request: pytest.FixtureRequest) -> Iterator[Browse]:
    """The same, JavaScript turned off: what every form must work with."""
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    yield Browse(context.new_page(), platform, name, scripts=False)
    context.close()
