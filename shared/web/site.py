"""What a UI adds to the app hosting it: its static files (ours, and the npm packages' dist files) and French
error pages for browsers. The API keeps its JSON problems: a page answers only a browser's request (it
accepts HTML) off the API's paths."""

import hashlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import Refusal
from shared.runtime.errors import HTTP_DETAILS, status_of
from shared.web.gateway import Refused, Unavailable
from shared.web.pages import FormExpired, PageNotFound, Pages, SignInRequired, Visit

log = structlog.get_logger("civique.web")
OWN_ASSETS = Path(__file__).parent / "static"
NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"  # scripts/bootstrap installs them
PACKAGES = {  # served under /static/<name>/
    "dsfr": NODE_MODULES / "@gouvfr" / "dsfr" / "dist",
    "htmx": NODE_MODULES / "htmx.org" / "dist",
    "leaflet": NODE_MODULES / "leaflet" / "dist",
}
LOCK_FILE = NODE_MODULES.parent / "package-lock.json"  # the npm packages' versions
LONG_CACHE = "public, max-age=31536000, immutable"  # a static file asked for at a version (`?v=`): a year
API_PATHS = ("/api/", "/internal/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")


def installer(pages: Pages, paths: tuple[str, ...] = ()) -> Callable[[FastAPI], None]:
    """`Service.install` of a UI whose pages are `pages`; with `paths`, the prefixes of its own space, whose
    error pages wear its header (the other UI of the process, the public website, keeps the rest)."""

    def install(app: FastAPI) -> None:
        spaces: list[tuple[tuple[str, ...], Pages]] = getattr(app.state, "web_spaces", [])
        spaces.append((paths, pages))
        pages.env.globals["assets"] = assets_version()  # the layout's links to static files carry it
        spaces.sort(key=lambda space: not space[0])  # the spaces with prefixes are looked at first
        app.state.web_spaces = spaces
        if getattr(app.state, "web_installed", False):  # the other UI of this process did the rest
            return
        app.state.web_installed = True
        app.add_middleware(CompressPages)
        serve_assets(app)
        install_error_pages(app, lambda request: pages_of(app, request))

    return install


def assets_version() -> str:
    """A digest of our static files and of the npm packages' versions: a new one with any change."""
    digest = hashlib.sha256(LOCK_FILE.read_bytes() if LOCK_FILE.is_file() else b"")
    for path in sorted(OWN_ASSETS.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def pages_of(app: FastAPI, request: Request) -> Pages:
    """The UI whose space holds the request's path: the one with that prefix, or else the one without."""
    spaces: list[tuple[tuple[str, ...], Pages]] = app.state.web_spaces
    path = request.url.path
    for paths, pages in spaces:
        if not paths or any(path == prefix or path.startswith(prefix + "/") for prefix in paths):
            return pages
    return spaces[-1][1]


def serve_assets(app: FastAPI) -> None:
    """/static/civique/ (ours), /static/dsfr/, /static/htmx/, /static/leaflet/ (from npm, never committed)."""
    app.mount("/static/civique", StaticFiles(directory=OWN_ASSETS), name="civique_assets")
    for name, folder in PACKAGES.items():
        if not folder.is_dir():
            log.warning("assets_missing", package=name, folder=str(folder), fix="run scripts/bootstrap")
        app.mount(f"/static/{name}", StaticFiles(directory=folder, check_dir=False), name=f"{name}_assets")


class CompressPages:
    """Gzip for the static files (the DSFR's CSS: 728 KB, about 90 KB compressed) and a browser's pages, when it
    accepts gzip; the API's answers and the services' calls to one another go as they are."""

    def __init__(self, app: ASGIApp, minimum_size: int = 500) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not browsed(scope):
            await self.app(scope, receive, send)
            return
        if not versioned(scope):
            await self.gzip(scope, receive, send)
            return

        async def kept_long(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = MutableHeaders(scope=message)
                headers["cache-control"] = LONG_CACHE
            await send(message)

        await self.gzip(scope, receive, kept_long)


def versioned(scope: Scope) -> bool:
    """A static file asked for at a version of the assets (`?v=…`): it never changes at that address."""
    query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
    return str(scope.get("path", "")).startswith("/static/") and bool(query.get("v", [""])[0])


def browsed(scope: Scope) -> bool:
    """A static file, or a page a browser asked for (htmx's requests included), off the API's paths."""
    path = str(scope.get("path", ""))
    if path.startswith(API_PATHS):
        return False
    if path.startswith("/static/"):
        return True
    headers = dict(scope.get("headers") or [])
    return b"text/html" in headers.get(b"accept", b"") or b"hx-request" in headers


def wants_page(request: Request) -> bool:
    """A browser's request off the API: it gets a page rather than a JSON problem."""
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(API_PATHS)


async def answered(answer: Response | Awaitable[Response]) -> Response:
    """An exception handler's answer, awaited when it is a coroutine's."""
    return await answer if inspect.isawaitable(answer) else answer


def install_error_pages(app: FastAPI, pages_for: Callable[[Request], Pages]) -> None:
    """The French 404, 403 and 500 pages, for browsers (`pages_for` a request: the UI that answers it); the app's
    JSON problems for everyone else."""
    json_http = app.exception_handlers[HTTPException]  # shared.runtime.errors' problems, for all but browsers
    json_bug = app.exception_handlers[Exception]
    json_refusal = app.exception_handlers[Refusal]

    def page(request: Request, status: int, title: str, detail: str) -> Response:
        context = {"code": status, "title": title, "detail": detail}
        return pages_for(request).render(request, "erreur.html", context, status)

    async def on_http(request: Request, exc: HTTPException) -> Response:
        if not wants_page(request):
            return await answered(json_http(request, exc))
        if exc.status_code == 404:
            return not_found(request)
        _, detail = HTTP_DETAILS.get(exc.status_code, ("", "La demande n’a pas abouti."))
        return page(request, exc.status_code, "La demande n’a pas abouti", detail)

    def not_found(request: Request) -> Response:
        return page(
            request,
            404,
            "Page introuvable",
            "La page que vous cherchez n’existe pas, n’existe plus, ou son adresse contient une erreur.",
        )

    async def on_bug(request: Request, exc: Exception) -> Response:
        answer = await answered(json_bug(request, exc))  # logs it with the correlation id
        if not wants_page(request):
            return answer
        return page(
            request,
            500,
            "Erreur inattendue",
            "Désolés, le service rencontre un problème. Réessayez dans un instant ; si le problème persiste, "
            "revenez plus tard.",
        )

    async def on_refused(request: Request, exc: Refused) -> Response:
        """What the API refused and the page did not handle: 401 to the login page, a page for the others."""
        if exc.status == 401:
            return await on_sign_in_required(request, SignInRequired())
        if exc.status == 404:
            return not_found(request)
        return page(request, exc.status if exc.status >= 400 else 500, "La demande n’a pas abouti", exc.detail)

    async def on_unavailable(request: Request, exc: Unavailable) -> Response:
        return page(request, exc.status, "Service indisponible", exc.detail)

    async def on_domain_refusal(request: Request, exc: Refusal) -> Response:
        """A refusal of the domain met by a page acting in process (another department's mission): in French."""
        if not wants_page(request):
            return await answered(json_refusal(request, exc))
        status = status_of(exc)
        if status == 404:
            return not_found(request)
        title = "Accès réservé" if status == 403 else "La demande n’a pas abouti"
        return page(request, status, title, exc.detail)

    async def on_sign_in_required(request: Request, exc: SignInRequired) -> Response:
        visit: Visit | None = getattr(request.state, "visit", None)
        comeback = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = f"/connexion?suite={quote(comeback, safe='')}"
        if visit is not None:
            if visit.signed_in is not None and exc.roles:  # signed in, but not as what this page needs
                return page(
                    request,
                    403,
                    "Accès réservé",
                    "Cette page est réservée à un autre type de compte : connectez-vous avec le compte qui convient.",
                )
            return visit.redirect(target)
        return Response(status_code=303, headers={"location": target})

    async def on_form_expired(request: Request, _: FormExpired) -> Response:
        return page(
            request,
            403,
            "Formulaire expiré",
            "Ce formulaire a expiré ou ne vient pas de ce site : rechargez la page, puis recommencez.",
        )

    async def on_page_not_found(request: Request, _: PageNotFound) -> Response:
        return not_found(request)

    app.add_exception_handler(HTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(Refused, on_refused)  # type: ignore[arg-type]
    app.add_exception_handler(Unavailable, on_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Refusal, on_domain_refusal)  # type: ignore[arg-type]
    app.add_exception_handler(SignInRequired, on_sign_in_required)  # type: ignore[arg-type]
    app.add_exception_handler(FormExpired, on_form_expired)  # type: ignore[arg-type]
    app.add_exception_handler(PageNotFound, on_page_not_found)  # type: ignore[arg-type]
