"""Pages: a UI's Jinja2 templates over the shared layout, and `Visit`, one visitor's request as its page
handles it: their session, the public API on their behalf (tokens refreshed on the way), the answer."""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared.events import Actor, Role
from shared.events.vocabulary import DOMAIN_LABELS
from shared.runtime.app import Runtime
from shared.runtime.settings import Settings
from shared.web import csrf, identity
from shared.web.forms import Submitted
from shared.web.gateway import Gateway, gateway_of
from shared.web.sessions import (
    COOKIE,
    MAX_COOKIE_BYTES,
    Notice,
    NoticeKind,
    Session,
    SessionCodec,
    SignedIn,
    cookie_attributes,
    now,
)

SHARED_TEMPLATES = Path(__file__).parent / "templates"
PARIS = ZoneInfo("Europe/Paris")
LABELS: dict[str, str] = {str(domain): label for domain, label in DOMAIN_LABELS.items()}
SETTLE_S, SETTLE_POLL_S = 3.0, 0.1
MONTHS = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()


class SignInRequired(Exception):
    """The page needs a signed-in visitor (of one of `roles`): they are sent to the login page, then back."""

    def __init__(self, roles: Sequence[Role] = ()) -> None:
        super().__init__("sign_in_required")
        self.roles = tuple(roles)


class FormExpired(Exception):
    """A POST without the session's form token: forged by another site, or sent from a page older than the session."""


class PageNotFound(Exception):
    """No such page, or none this visitor may see: the French 404 page."""


# ---- the templates ----


def environment(*folders: Path) -> jinja2.Environment:
    """The templates of a UI (`folders`, searched first) over the shared ones: the layout, the macros of forms,
    alerts and pagination, the error pages. HTML is escaped; French dates and numbers as filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*folders, SHARED_TEMPLATES]),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {"date_fr": french_date, "nombre": french_number, "domaine": domain_label}
    env.globals |= {"DOMAINS": DOMAIN_LABELS, "CSRF_FIELD": csrf.FIELD}
    return env


def french_date(value: date | datetime | str | None, with_time: bool = False) -> str:
    """« 6 décembre 2026 » (« à 14 h 05 », Paris time, with `with_time`); "" for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value.astimezone(PARIS) if value.tzinfo else value
        day = f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"
        return f"{day} à {moment.hour} h {moment.minute:02d}" if with_time else day
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def french_number(value: float | int | None, decimals: int = 0) -> str:
    """« 12 345 » or « 4,5 »: a narrow no-break space between thousands, a decimal comma."""
    if value is None:
        return ""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",")


def domain_label(domain: str) -> str:
    return LABELS.get(domain, domain)


# ---- security headers ----


def security_headers(settings: Settings) -> dict[str, str]:
    """Every page's headers: a Content-Security-Policy without inline script or style (the tile server's
    images aside, everything comes from this site), no framing, no sniffing, no referrer to other sites."""
    tiles = urlsplit(settings.map_tiles_url.replace("{s}", "*"))
    tile_origin = f"{tiles.scheme}://{tiles.netloc}" if tiles.scheme and tiles.netloc else ""
    policy = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": f"'self' data: {tile_origin}".strip(),
        "font-src": "'self'",
        "connect-src": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'self'",
        "object-src": "'none'",
    }
    return {
        "content-security-policy": "; ".join(f"{name} {value}" for name, value in policy.items()),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
    }


# ---- a visit ----


class Pages:
    """A UI's pages: its templates over the shared ones, and `visit`, the FastAPI dependency of its routes."""

    def __init__(self, *folders: Path) -> None:
        self.env = environment(*folders)

    async def visit(self, request: Request) -> "Visit":
        """The visitor's request, their session opened; a POST's form read, and refused without the form token."""
        runtime: Runtime = request.app.state.runtime
        opened = codec_of(runtime).decode(request.cookies.get(COOKIE))
        visit = Visit(request, self, runtime, opened or Session())
        visit.changed = opened is None
        request.state.visit = visit  # the error pages answer with the same session (a token refreshed meanwhile)
        if request.method == "POST":
            visit.form = Submitted.parse(await request.body())
            if not csrf.valid(visit.session.csrf, visit.form.get(csrf.FIELD)):
                raise FormExpired()
        return visit

    def render(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        """A page for `request`, with the session of its visit when it has one (the error pages)."""
        visit: Visit | None = getattr(request.state, "visit", None)
        if visit is None:
            runtime: Runtime = request.app.state.runtime
            visit = Visit(request, self, runtime, codec_of(runtime).decode(request.cookies.get(COOKIE)) or Session())
        return visit.render(template, status=status, **context)


class Visit:
    """One visitor's request: their session (`changed` when the answer must carry it again), the form they sent,
    calls to the public API with their tokens, and the page, redirect or download that answers them."""

    def __init__(self, request: Request, pages: Pages, runtime: Runtime, session: Session) -> None:
        self.request, self.pages, self.runtime, self.session = request, pages, runtime, session
        self.settings: Settings = runtime.settings
        self.form = Submitted()
        self.changed = False

    # ---- who ----

    @property
    def signed_in(self) -> SignedIn | None:
        return self.session.signed_in

    def require(self, *roles: Role) -> SignedIn:
        """The signed-in visitor, who must have one of `roles` (any role without): the login page otherwise."""
        signed_in = self.session.signed_in
        if signed_in is None or (roles and signed_in.role not in roles):
            raise SignInRequired(roles)
        return signed_in

    async def actor(self, *roles: Role) -> Actor:
        """The acting user, for a UI that acts in process rather than through the API (the moderation service's
        pages): whom the session's access token names, its signature checked with the gateway's key (the token,
        renewed through the gateway when it ends, is the proof: the cookie alone is not); one of `roles`."""
        self.require(*roles)
        secret = self.settings.secret("jwt_secret")
        for attempt in (1, 2):
            assert self.session.signed_in is not None
            if attempt == 2 or self.session.signed_in.expiring(now()):
                await self._refresh()
            assert self.session.signed_in is not None
            try:
                actor = identity.actor_of(self.session.signed_in.access_token, secret)
            except identity.TokenExpired:
                continue
            except identity.TokenInvalid:  # not the gateway's (another key, a forged one): signed out
                self.sign_out()
                raise SignInRequired() from None
            if roles and actor.role not in roles:
                raise SignInRequired(roles)
            return actor
        raise SignInRequired()

    def sign_in(self, tokens: dict[str, Any]) -> SignedIn:
        """Keep the gateway's tokens (`Tokens`) in the session; a new form token with the new session."""
        self.session.signed_in = SignedIn.of(tokens, now())
        self.session.csrf = csrf.new_token()
        self.changed = True
        return self.session.signed_in

    def sign_out(self) -> None:
        self.session = Session(notices=self.session.notices)
        self.changed = True

    def keep(self, draft: str, values: dict[str, Any]) -> dict[str, Any]:
        """`values` added to the draft of a form filled in steps, which the session keeps; the whole draft."""
        kept = self.session.drafts.setdefault(draft, {})
        kept.update(values)
        self.changed = True
        return kept

    def forget(self, draft: str) -> None:
        if self.session.drafts.pop(draft, None) is not None:
            self.changed = True

    # ---- the public API ----

    @property
    def gateway(self) -> Gateway:
        return gateway_of(self.runtime)

    async def call(self, method: str, path: str, *, as_visitor: bool = True, **kwargs: Any) -> httpx.Response:
        """`method` on /api/v1`path` as this visitor: with their access token when signed in, renewed first when
        it is about to end, and once more when the gateway finds it expired all the same (`as_visitor=False`:
        without their token)."""
        if not as_visitor or self.session.signed_in is None:
            return await self._call(method, path, None, **kwargs)
        if self.session.signed_in.expiring(now()):
            await self._refresh()
        answer = await self._call(method, path, self.session.signed_in.access_token, **kwargs)
        if answer.status_code == 401 and problem_code(answer) == "token_expired":
            await self._refresh()
            answer = await self._call(method, path, self.session.signed_in.access_token, **kwargs)
        return answer

    @property
    def peer(self) -> tuple[str, int]:
        """The visitor's address and port, as this process sees them."""
        client = self.request.client
        return (client.host, client.port) if client else ("unknown", 0)

    async def _call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        forwarded_for = self.request.headers.get("x-forwarded-for")
        return await self.gateway.call(
            method, path, visitor=self.peer, forwarded_for=forwarded_for, token=token, **kwargs
        )

    async def _refresh(self) -> None:
        assert self.session.signed_in is not None
        answer = await self.gateway.refresh(
            self.session.signed_in.refresh_token,
            visitor=self.peer,
            forwarded_for=self.request.headers.get("x-forwarded-for"),
        )
        if answer.status_code != 200:  # revoked, expired, or the account is gone: signed out
            self.sign_out()
            self.notify("info", "Votre session a expiré : reconnectez-vous.")
            raise SignInRequired()
        self.session.signed_in = SignedIn.of(answer.json(), now())
        self.changed = True

    # ---- answers ----

    def notify(self, kind: NoticeKind, text: str) -> None:
        """A message shown once, on the next page this visitor sees."""
        self.session.notices.append(Notice(kind=kind, text=text))
        self.changed = True

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """The page `template`, with the visitor, their notices (shown now, so forgotten) and the form token."""
        notices, self.session.notices = self.session.notices, []
        self.changed = self.changed or bool(notices)
        html = self.pages.env.get_template(template).render(
            visit=self,
            notices=notices,
            csrf_token=self.session.csrf,
            brand=self.settings.brand,
            path=self.request.url.path,
            htmx=self.htmx,
            **context,
        )
        return self.finish(HTMLResponse(html, status_code=status))

    def redirect(self, url: str) -> Response:
        """To `url` after a POST (303: the browser GETs it); htmx follows it as a whole page."""
        if self.htmx:
            return self.finish(Response(status_code=200, headers={"hx-redirect": url}))
        return self.finish(RedirectResponse(url, status_code=303))

    def download(self, content: bytes, filename: str, media_type: str) -> Response:
        disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"
        return self.finish(Response(content, media_type=media_type, headers={"content-disposition": disposition}))

    def finish(self, response: Response) -> Response:
        """The security headers, no caching of personal pages, and the session cookie when it changed."""
        response.headers.update(security_headers(self.settings))
        response.headers["cache-control"] = "no-store" if self.session.signed_in else "no-cache"
        if self.changed:
            value = codec_of(self.runtime).encode(self.session)
            if len(value) > MAX_COOKIE_BYTES:  # a bug of ours: the browser would drop it and the visitor with it
                raise RuntimeError(f"session cookie of {len(value)} bytes")
            response.set_cookie(
                COOKIE,
                value,
                **cookie_attributes(
                    secure=self.settings.public_url.startswith("https://"),
                    signed_in=self.session.signed_in is not None,
                    lifetime_s=self.settings.refresh_token_ttl_s,
                ),
            )
        return response

    @property
    def htmx(self) -> bool:
        """Whether htmx sent this request (to swap a part of the page), rather than the browser itself."""
        return self.request.headers.get("hx-request") == "true"

    def not_found(self) -> NoReturn:
        raise PageNotFound()


async def settled(check: Callable[[], Awaitable[bool]], within_s: float = SETTLE_S) -> bool:
    """Read your writes: the read models follow the events a moment behind, so the page shown after a change
    waits for `check` to see it (at most `within_s`) rather than show the state before it. Whether it did."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(SETTLE_POLL_S)
    return True


def problem_code(answer: httpx.Response) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        return str(answer.json().get("code"))
    return None


def codec_of(runtime: Runtime) -> SessionCodec:
    """The process's session codec, keyed by CIVIQUE_LINK_SECRET (every replica of the site reads the same cookies)."""
    return runtime.held(SessionCodec, lambda: SessionCodec(runtime.settings.secret("link_secret")))


def safe_next(url: str | None, default: str = "/") -> str:
    """A path of this site to go back to after logging in: never another site (open redirects)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url
