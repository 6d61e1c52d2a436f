"""HTTP API of the notifications service: preferences, unsubscribe links, referents' broadcasts and their
report, failed e-mails for the operators, and the local mailbox of embedded runs."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from markupsafe import escape
from pydantic import BaseModel, ConfigDict, Field

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


@router.get("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(token: Annotated[str, Query(max_length=500)], handlers: Handlers) -> HTMLResponse:
    """The link of every non-transactional e-mail: one click, no login."""
    category = await handlers.unsubscribe(token)
    return HTMLResponse(page("Désinscription enregistrée", f"<p>{escape(UNSUBSCRIBED[category])}</p>"))


@router.post("/unsubscribe")
async def unsubscribe_one_click(token: Annotated[str, Query(max_length=500)], handlers: Handlers) -> dict:
    """RFC 8058 one-click unsubscribing, as mail clients do it from the List-Unsubscribe header."""
    return {"unsubscribed": await handlers.unsubscribe(token)}


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
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{escape(title)} — Civique</title></head>'
        f'<body style="font-family: Marianne, Arial, sans-serif; max-width: 760px; margin: 2em auto;">'
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )
