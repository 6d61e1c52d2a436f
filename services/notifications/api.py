"""HTTP API of the notifications service: preferences, unsubscribe links, referents' broadcasts and their
report, failed e-mails for the operators, and the local mailbox of embedded runs."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import escape

from services.notifications import projections
from services.notifications.domain import InvalidLink
from services.notifications.handlers import Notifications
from shared.contracts.notifications import (
    Broadcast,
    BroadcastAccepted,
    BroadcastAudience,
    BroadcastReport,
    Failure,
    FailuresQuery,
    PreferencesChange,
    PreferencesView,
    Unsubscribed,
    UnsubscribeQuery,
)
from shared.errors import Refusal
from shared.events.vocabulary import Department
from shared.runtime.actors import ActingUser
from shared.runtime.app import provided

router = APIRouter(prefix="/notifications", tags=["notifications"])
pages = APIRouter(prefix="/notifications", include_in_schema=False)  # public: the local mailbox of embedded runs
Handlers = Annotated[Notifications, Depends(provided("notifications", Notifications))]
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


@router.get("/preferences")
async def preferences(actor: ActingUser, handlers: Handlers) -> PreferencesView:
    return await handlers.preferences(actor.id)


@router.put("/preferences")
async def change_preferences(body: PreferencesChange, actor: ActingUser, handlers: Handlers) -> PreferencesView:
    """Realtime or daily summary (managers, referents), and which optional e-mails to receive."""
    return await handlers.change_preferences(actor, body)


@router.get("/unsubscribe", response_class=HTMLResponse, responses={400: {"content": {"text/html": {}}}})
async def unsubscribe_page(handlers: Handlers, query: Annotated[UnsubscribeQuery, Query()]) -> HTMLResponse:
    """The link of every non-transactional e-mail: a confirmation page, no login. Opening it changes nothing
    (mail scanners and link previews open links); its button posts the choice to the same address."""
    try:
        category = handlers.unsubscribe_category(query.token)
    except InvalidLink as refusal:
        return problem_page(refusal)
    token = query.token or ""
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
    response_model=Unsubscribed,
    responses={200: {"content": {"text/html": {}}}, 400: {"content": {"text/html": {}}}},
)
async def unsubscribe(
    request: Request, handlers: Handlers, query: Annotated[UnsubscribeQuery, Query()]
) -> Unsubscribed | HTMLResponse:
    """The confirmation page's button, answered with a page when the client prefers HTML (a browser), and
    RFC 8058 one-click unsubscribing from the List-Unsubscribe header (mail clients), answered in JSON."""
    as_page = prefers_html(request.headers.get("accept", ""))
    try:
        done = await handlers.unsubscribe(query.token)
    except InvalidLink as refusal:
        if as_page:
            return problem_page(refusal)
        raise
    if not as_page:
        return done
    body = f"<p>{escape(UNSUBSCRIBED[done.unsubscribed])}</p><p>Les e-mails liés à votre compte continuent.</p>"
    return html_page("Désinscription enregistrée", body)


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


def problem_page(refusal: Refusal) -> HTMLResponse:
    return html_page("Lien non valide", f'<p data-code="{escape(refusal.code)}">{escape(refusal.detail)}</p>', 400)


def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A public page reached from an e-mail: not cached, not indexed, and its token not sent on as a referrer."""
    return HTMLResponse(
        page(title, body),
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"},
    )


@router.post("/departments/{department}/broadcasts", status_code=202)
async def post_broadcast(
    department: Department, body: Broadcast, actor: ActingUser, handlers: Handlers
) -> BroadcastAccepted:
    """A referent writes to the volunteers of their department still without a mission (throttled, opt-outs
    honoured); the report counts what became of each e-mail."""
    return await handlers.post_broadcast(actor, department, body)


@router.get("/departments/{department}/broadcast-audience")
async def broadcast_audience(department: Department, actor: ActingUser, handlers: Handlers) -> BroadcastAudience:
    """A broadcast's preview: how many volunteers it would reach if posted now (as `fan_out` would count them)."""
    await handlers.check_department(actor, department)
    recipients = await projections.idle_volunteers(handlers.documents, department)
    return BroadcastAudience(department=department, recipients=len(recipients))


@router.get("/broadcasts/{broadcast_id}")
async def broadcast_report(broadcast_id: str, actor: ActingUser, handlers: Handlers) -> BroadcastReport:
    return await handlers.broadcast_report(actor, broadcast_id)


@router.get("/failures")
async def failures(actor: ActingUser, handlers: Handlers, query: Annotated[FailuresQuery, Query()]) -> list[Failure]:
    """E-mails given up (dead letters) or possibly sent before a crash (unconfirmed), for the operators."""
    return await handlers.failures(actor, query)


# ---- the local mailbox: what an embedded run would have sent, for a person to read ----


@pages.get("/mailbox", response_class=HTMLResponse)
async def mailbox(handlers: Handlers) -> HTMLResponse:
    letters = await handlers.mailbox()
    rows = "".join(
        f"<tr><td>{escape(m['sent_at'][:19])}</td><td>{escape(m['to'])}</td>"
        f'<td><a href="mailbox/{escape(m["id"])}">{escape(m["subject"])}</a></td></tr>'
        for m in letters
    )
    table = f"<table><tr><th>Envoyé le</th><th>À</th><th>Objet</th></tr>{rows}</table>"
    return HTMLResponse(page("Boîte d’envoi locale", table if letters else "<p>Aucun e-mail pour l’instant.</p>"))


@pages.get("/mailbox/{message_id}", response_class=HTMLResponse)
async def mailbox_letter(message_id: str, handlers: Handlers) -> HTMLResponse:
    letter = await handlers.mailbox_letter(message_id)
    return HTMLResponse(letter["html"])


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)} — Civique</title></head>"
        f'<body style="font-family: Marianne, Arial, sans-serif; max-width: 760px; margin: 2em auto;">'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
