"""What a UI adds to the app hosting it: its static files (ours, and the npm packages' dist files) and French
error pages for browsers. The API keeps its JSON problems: a page answers only a browser's request (it
accepts HTML) off the API's paths."""

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from shared.runtime.errors import HTTP_DETAILS
from shared.web.gateway import Refused
from shared.web.pages import FormExpired, PageNotFound, Pages, SignInRequired, Visit

log = structlog.get_logger("civique.web")
OWN_ASSETS = Path(__file__).parent / "static"
NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"  # scripts/bootstrap installs them
PACKAGES = {  # served under /static/<name>/
    "dsfr": NODE_MODULES / "@gouvfr" / "dsfr" / "dist",
    "htmx": NODE_MODULES / "htmx.org" / "dist",
    "leaflet": NODE_MODULES / "leaflet" / "dist",
}
API_PATHS = ("/api/", "/internal/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")


def installer(pages: Pages) -> Callable[[FastAPI], None]:
    """`Service.install` of a UI whose pages are `pages`."""

    def install(app: FastAPI) -> None:
        if getattr(app.state, "web_installed", False):  # the other UI of this process did it
            return
        app.state.web_installed = True
        serve_assets(app)
        install_error_pages(app, pages)

    return install


def serve_assets(app: FastAPI) -> None:
    """/static/civique/ (ours), /static/dsfr/, /static/htmx/, /static/leaflet/ (from npm, never committed)."""
    app.mount("/static/civique", StaticFiles(directory=OWN_ASSETS), name="civique_assets")
    for name, folder in PACKAGES.items():
        if not folder.is_dir():
            log.warning("assets_missing", package=name, folder=str(folder), fix="run scripts/bootstrap")
        app.mount(f"/static/{name}", StaticFiles(directory=folder, check_dir=False), name=f"{name}_assets")


def wants_page(request: Request) -> bool:
    """A browser's request off the API: it gets a page rather than a JSON problem."""
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(API_PATHS)


async def answered(answer: Response | Awaitable[Response]) -> Response:
    """An exception handler's answer, awaited when it is a coroutine's."""
    return await answer if inspect.isawaitable(answer) else answer


def install_error_pages(app: FastAPI, pages: Pages) -> None:
    """The French 404, 403 and 500 pages, for browsers; the app's JSON problems for everyone else."""
    json_http = app.exception_handlers[HTTPException]  # shared.runtime.errors' problems, for all but browsers
    json_bug = app.exception_handlers[Exception]

    def page(request: Request, status: int, title: str, detail: str) -> Response:
        return pages.render(request, "erreur.html", {"code": status, "title": title, "detail": detail}, status)

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
        title = "Service indisponible" if exc.status >= 500 else "La demande n’a pas abouti"
        return page(request, exc.status if exc.status >= 400 else 500, title, exc.detail)

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
    app.add_exception_handler(SignInRequired, on_sign_in_required)  # type: ignore[arg-type]
    app.add_exception_handler(FormExpired, on_form_expired)  # type: ignore[arg-type]
    app.add_exception_handler(PageNotFound, on_page_not_found)  # type: ignore[arg-type]
