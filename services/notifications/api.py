"""HTTP API of the notifications service: preferences, unsubscribe links, referents' broadcasts and their
report, failed e-mails for the operators, and the local mailbox of embedded runs."""

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import escape
from pydantic import BaseModel, ConfigDict, Field

from services.notifications.domain import INVALID_LINK
from services.notifications.handlers import Notifications
from shared.events.vocabulary import Department
from shared.runtime.actors import ActingUser, require_role
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.mail import MAILBOX
from shared.runtime.problems import Problem

router = APIRouter(prefix="/notifications", tags=["notifications"])
pages = APIRouter(prefix="/notifications", include_in_schema=False)  # public: the local mailbox of embedded runs
Context = Annotated[ServiceContext, Depends(service_context("notifications"))]


def notifications(ctx: Context) -> Notifications:
    return Notifications(ctx)


Handlers = Annotated[Notifications, Depends(notifications)]
UNSUBSCRIBED = {
    "news": "Vous ne recevrez plus de propositions de missions ni de messages de votre référent.",
    "activity": "Vous ne recevrez plus d’e-mails sur l’activité de vos missions ; les rappels importants continuent.",
}
TITLES = {
    "news": "Ne plus recevoir de propositions de missions ?",
    "activity": "Ne plus recevoir les e-mails d’activité ?",
}
WHAT_STOPS = {
    "news": "les missions que les structures vous proposent, les suggestions de missions près de chez vous et "
    "les messages de votre référent départemental.",
    "activity": "les e-mails sur l’activité de vos missions et de votre département (nouvelles candidatures, "
    "retraits, places restantes, missions et structures à valider), ainsi que leur résumé quotidien.",
}
WHAT_CONTINUES = {
    "news": "les e-mails sur votre compte et vos candidatures (confirmation, acceptation, refus, annulation).",
    "activity": "les e-mails sur votre compte, les décisions sur vos missions et votre structure, et les rappels "
    "importants (candidatures en attente, éléments à traiter, fin de mission).",
}


class PreferencesChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frequency: Literal["realtime", "summary"] | None = None
    news: bool | None = Field(default=None, description="propositions de missions et messages des référents")
    activity: bool | None = Field(default=None, description="activité des missions (gestionnaires, référents)")


class Broadcast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=3, max_length=150)
    body: str = Field(min_length=10, max_length=5000)


@router.get("/preferences")
async def preferences(actor: ActingUser, handlers: Handlers) -> dict:
    return await handlers.preferences(actor.id)


@router.put("/preferences")
async def change_preferences(body: PreferencesChange, actor: ActingUser, handlers: Handlers) -> dict:
    """Realtime or daily summary (managers, referents), and which optional e-mails to receive."""
    if body.frequency is not None and actor.role not in ("manager", "referent", "admin"):
        raise Problem(
            422, "frequency_not_applicable", "Le résumé quotidien concerne les gestionnaires et les référents."
        )
    current = await handlers.preferences(actor.id)
    unsubscribed = set(current["unsubscribed"])
    for category in ("news", "activity"):
        wanted = getattr(body, category)
        if wanted is not None:
            unsubscribed = unsubscribed - {category} if wanted else unsubscribed | {category}
    changes: dict = {"unsubscribed": sorted(unsubscribed)}
    if body.frequency is not None:
        changes["frequency"] = body.frequency
    return await handlers.set_preferences(actor.id, changes)


@router.get("/unsubscribe", response_class=HTMLResponse, responses={400: {"content": {"text/html": {}}}})
async def unsubscribe_page(handlers: Handlers, token: Annotated[str | None, Query()] = None) -> HTMLResponse:
    """The link of every non-transactional e-mail: a confirmation page, no login. Opening it changes nothing
    (mail scanners and link previews open links); its button posts the choice to the same address."""
    try:
        token = checked(token)
        category = handlers.unsubscribe_category(token)
    except Problem as problem:
        return problem_page(problem)
    stops, continues = WHAT_STOPS[category], WHAT_CONTINUES[category]
    form = (
        f'<form method="post" action="?{escape(urlencode({"token": token}))}">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f'<button type="submit" aria-describedby="what-stops">Confirmer ma désinscription</button></form>'
    )
    body = (
        f'<p id="what-stops"><strong>Ce qui s’arrête :</strong> {escape(stops)}</p>'
        f"<p><strong>Ce qui continue :</strong> {escape(continues)}</p>"
        f"{form}"
        "<p>Vous ne souhaitez pas vous désinscrire ? Fermez simplement cette page : rien n’a changé. "
        "Vous pourrez aussi choisir vos e-mails à tout moment dans vos préférences, une fois connecté.</p>"
    )
    return html_page(TITLES[category], body)


@router.post(
    "/unsubscribe",
    responses={200: {"content": {"application/json": {}, "text/html": {}}}, 400: {"content": {"text/html": {}}}},
)
async def unsubscribe(request: Request, handlers: Handlers, token: Annotated[str | None, Query()] = None) -> Response:
    """The confirmation page's button, answered with a page when the client prefers HTML (a browser), and
    RFC 8058 one-click unsubscribing from the List-Unsubscribe header (mail clients), answered in JSON."""
    as_page = prefers_html(request.headers.get("accept", ""))
    try:
        category = await handlers.unsubscribe(checked(token))
    except Problem as problem:
        if as_page:
            return problem_page(problem)
        raise
    if not as_page:
        return JSONResponse({"unsubscribed": category})
    body = f"<p>{escape(UNSUBSCRIBED[category])}</p><p>Les e-mails liés à votre compte continuent.</p>"
    return html_page("Désinscription enregistrée", body)


def checked(token: str | None) -> str:
    if not token or len(token) > 500:
        raise INVALID_LINK
    return token


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above application/json (a browser's form, not a mail client)."""
    return bool(accept) and quality(accept, "text/html") > quality(accept, "application/json")


def quality(accept: str, media_type: str) -> float:
    """The q-value the most specific matching range of `accept` gives `media_type` (RFC 9110, 12.5.1)."""
    best, specificity = 0.0, -1
    for part in accept.split(","):
        media_range, *parameters = (item.strip().lower() for item in part.split(";"))
        matches = {media_type: 2, media_type.split("/")[0] + "/*": 1, "*/*": 0}
        if media_range not in matches or matches[media_range] <= specificity:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best, specificity = q, matches[media_range]
    return best


def problem_page(problem: Problem) -> HTMLResponse:
    return html_page("Lien non valide", f'<p data-code="{escape(problem.code)}">{escape(problem.detail)}</p>', 400)


def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A public page reached from an e-mail: not cached, not indexed, and its token not sent on as a referrer."""
    return HTMLResponse(
        page(title, body),
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"},
    )


@router.post("/departments/{department}/broadcasts", status_code=202)
async def post_broadcast(department: Department, body: Broadcast, actor: ActingUser, handlers: Handlers) -> dict:
    """A referent writes to the volunteers of their department still without a mission (throttled, opt-outs
    honoured); the report counts what became of each e-mail."""
    require_role(actor, "referent", "admin")
    return await handlers.post_broadcast(actor, department, body.subject, body.body)


@router.get("/broadcasts/{broadcast_id}")
async def broadcast_report(broadcast_id: str, actor: ActingUser, handlers: Handlers) -> dict:
    require_role(actor, "referent", "admin")
    return await handlers.broadcast_report(actor, broadcast_id)


@router.get("/failures")
async def failures(
    actor: ActingUser,
    handlers: Handlers,
    status: Literal["dead", "unconfirmed"] = "dead",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list:
    """E-mails given up (dead letters) or possibly sent before a crash (unconfirmed), for the operators."""
    require_role(actor, "admin")
    return await handlers.log.failures(status, limit)


# ---- the local mailbox: what an embedded run would have sent, for a person to read ----


@pages.get("/mailbox", response_class=HTMLResponse)
async def mailbox(ctx: Context) -> HTMLResponse:
    check_mailbox(ctx)
    letters = await ctx.documents.find(MAILBOX, sort=[("sent_at", -1)], limit=200)
    rows = "".join(
        f"<tr><td>{escape(m['sent_at'][:19])}</td><td>{escape(m['to'])}</td>"
        f'<td><a href="mailbox/{escape(m["id"])}">{escape(m["subject"])}</a></td></tr>'
        for m in letters
    )
    table = f"<table><tr><th>Envoyé le</th><th>À</th><th>Objet</th></tr>{rows}</table>"
    return HTMLResponse(page("Boîte d’envoi locale", table if letters else "<p>Aucun e-mail pour l’instant.</p>"))


@pages.get("/mailbox/{message_id}", response_class=HTMLResponse)
async def mailbox_letter(message_id: str, ctx: Context) -> HTMLResponse:
    check_mailbox(ctx)
    letter = await ctx.documents.get(MAILBOX, message_id)
    if letter is None:
        raise Problem(404, "message_not_found", "Cet e-mail est introuvable.")
    return HTMLResponse(letter["html"])


def check_mailbox(ctx: ServiceContext) -> None:
    if ctx.settings.smtp_host:
        raise Problem(404, "no_local_mailbox", "Les e-mails partent par SMTP : il n’y a pas de boîte locale.")


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)} — Civique</title></head>"
        f'<body style="font-family: Marianne, Arial, sans-serif; max-width: 760px; margin: 2em auto;">'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
