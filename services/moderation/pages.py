"""The referents' space, served by the moderation service (ADR 0012, amendment): what waits for a decision,
the queues of missions and organisations, their files and the decisions, the territory's figures, the exports;
messages to a department's volunteers and their reports; the admins' pages (referents, invitations, policies,
failed e-mails).

Pages read the service's own read models and act through its own handlers, in process; the acting user is the
one the session's access token names (issued by the gateway, checked with its key: `Visit.actor`). Scoping is
the handlers': a referent sees and acts in their departments only, an admin everywhere. What other services own
(broadcasts, failed e-mails: notifications; invitations: the gateway's accounts) goes through the public API on
the visitor's behalf (`Visit.call`), never by importing them.
"""

import csv
import hashlib
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from math import ceil
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.moderation.handlers import QUEUE_STATES, ItemKind, Listing, ModerationHandlers, hours_since
from shared import geo
from shared.contracts.moderation import Dashboard, MissionDecision, OrganizationDecision
from shared.contracts.notifications import Broadcast, BroadcastReport, Failure
from shared.errors import Forbidden, NotFound, Refusal
from shared.events import Actor
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason
from shared.events.vocabulary import DOMAIN_LABELS, ModerationPolicy
from shared.runtime.app import provided
from shared.runtime.errors import field_message
from shared.web.forms import Form
from shared.web.gateway import Refused, expect
from shared.web.pages import Pages, Visit, domain_label, settled
from shared.web.site import installer

pages = Pages(Path(__file__).parent / "templates")
install = installer(pages, paths=("/moderation", "/departements"))
VisitOf = Annotated[Visit, Depends(pages.visit)]
Handlers = Annotated[ModerationHandlers, Depends(provided("moderation", ModerationHandlers))]
router = APIRouter(include_in_schema=False)

PER_PAGE = 20
WAITING_DAYS = {"2": "Plus de 2 jours", "7": "Plus de 7 jours"}  # the age filter of a queue
HOME_ITEMS = 10  # the oldest of each kind on the home page
COMMENT_MAX = 2000
BACKLOG_ALERT_H = 48  # an item waiting longer than this is a territory alert
CROWD_ALERT = 20  # volunteers per open mission above which the territory lacks missions

STATES: dict[ItemKind, dict[str, tuple[str, str]]] = {  # label and badge of each queue state
    "mission": {
        "pending": ("En attente de validation", "new"),
        "validated": ("Validée", "success"),
        "refused": ("Refusée", "error"),
        "changes_requested": ("Modifications demandées", "warning"),
    },
    "organization": {
        "pending": ("En attente de validation", "new"),
        "approved": ("Validée", "success"),
        "rejected": ("Refusée", "error"),
    },
}
MISSION_STATUSES = {
    "draft": "Brouillon",
    "submitted": "En attente de validation",
    "changes_requested": "Modifications demandées",
    "refused": "Refusée",
    "validated": "Validée",
    "published": "En ligne",
    "filled": "Complète",
    "closed": "Terminée",
    "cancelled": "Annulée",
}
MISSION_REFUSAL_REASONS: dict[MissionRefusalReason, str] = {
    "outside_priority_domains": "Hors des domaines prioritaires de la crise",
    "unsafe_conditions": "Conditions de sécurité insuffisantes",
    "not_a_volunteer_mission": "Ce n’est pas une mission de bénévolat",
    "duplicate": "Doublon d’une autre mission",
    "other": "Autre motif (précisez-le)",
}
ORGANIZATION_REJECTION_REASONS: dict[OrganizationRejectionReason, str] = {
    "not_eligible": "Structure non éligible",
    "unverifiable_identity": "Identité de la structure invérifiable",
    "duplicate": "Structure déjà inscrite",
    "other": "Autre motif (précisez-le)",
}
MISSION_DECISIONS: dict[MissionDecision, str] = {
    "validate": "Valider la mission",
    "request_changes": "Demander des modifications",
    "refuse": "Refuser la mission",
}
ORGANIZATION_DECISIONS: dict[OrganizationDecision, str] = {
    "approve": "Valider la structure",
    "reject": "Refuser la structure",
}
DONE = {  # what the notice says once a decision is recorded
    "validate": "mission validée",
    "request_changes": "modifications demandées à la structure",
    "refuse": "mission refusée",
    "approve": "structure validée",
    "reject": "structure refusée",
}
HISTORY = {
    "submitted": "Soumise par la structure",
    "registered": "Inscrite par la structure",
    "cancelled": "Annulée par la structure",
    "validated": "Validée",
    "refused": "Refusée",
    "changes_requested": "Modifications demandées",
    "approved": "Validée",
    "rejected": "Refusée",
}
REASONS: dict[ItemKind, dict[Any, str]] = {
    "mission": MISSION_REFUSAL_REASONS,
    "organization": ORGANIZATION_REJECTION_REASONS,
}
DUPLICATE_REASONS = {"siret": "même SIRET", "rna": "même RNA", "name": "même nom dans le département"}
DECISION_LABELS = {
    "decision": "Votre décision",
    "reason": "Motif du refus",
    "comment": "Commentaire pour la structure",
}
ORGANIZATION_KINDS = {
    "association": "Association",
    "network_antenna": "Antenne d’un réseau national",
    "local_authority": "Collectivité (mairie, CCAS…)",
    "public_establishment": "Établissement public",
    "other_public_service": "Autre service public",
}
KIND_PATHS: dict[ItemKind, str] = {"mission": "missions", "organization": "organizations"}


def age(hours: float) -> str:
    """« moins d’1 h », « 5 h », « 3 j »: how long an item has waited."""
    if hours < 1:
        return "moins d’1 h"
    return f"{int(hours)} h" if hours < 48 else f"{int(hours // 24)} j"


pages.env.filters |= {"attente": age}
pages.env.globals |= {
    "STATES": STATES,
    "MISSION_STATUSES": MISSION_STATUSES,
    "HISTORY": HISTORY,
    "REASONS": REASONS,
    "DUPLICATE_REASONS": DUPLICATE_REASONS,
    "KIND_PATHS": KIND_PATHS,
    "ORGANIZATION_KINDS": ORGANIZATION_KINDS,
    "WAITING_DAYS": WAITING_DAYS,
}


async def moderator(visit: Visit) -> Actor:
    """A referent or an admin, as the gateway's token names them: the login page, or a 403 for other roles."""
    return await visit.actor("referent", "admin")


def department_name(code: str) -> str:
    return geo.department(code).name


def known_department(code: str) -> bool:
    return code in {d.code for d in geo.departments()}


def departments_of(scope: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """The departments a filter offers: the referent's, or all of them for an admin."""
    codes = scope if scope is not None else [d.code for d in geo.departments()]
    return [(code, f"{code} — {department_name(code)}") for code in codes]


# ---- to do ----


@router.get("/moderation")
async def to_do(visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    scope = await handlers.scope(actor)
    now = datetime.now(UTC)
    organizations = await handlers.listing(actor, Listing("organization"))
    missions = await handlers.listing(actor, Listing("mission"))
    alerts: list[tuple[str, str]] = []
    for code in (scope or ())[:10]:  # an admin's: on each department's dashboard, not all 101 here
        alerts += territory_alerts(code, await handlers.department_dashboard(code, actor))
    return visit.render(
        "a_traiter.html",
        scope=scope,
        departments=departments_of(scope) if scope is not None else [],
        counts=await handlers.counts(actor),
        organizations=[row(e, now) for e in organizations[:HOME_ITEMS]],
        missions=[row(e, now) for e in missions[:HOME_ITEMS]],
        waiting={"organization": len(organizations), "mission": len(missions)},
        alerts=alerts,
    )


def territory_alerts(department: str, dashboard: Dashboard) -> list[tuple[str, str]]:
    """What calls for a referent's attention in a department, from its figures (kind, French text)."""
    name = f"{department_name(department)} ({department})"
    alerts: list[tuple[str, str]] = []
    oldest = dashboard.pending_moderation.oldest_age_hours
    if oldest is not None and oldest > BACKLOG_ALERT_H:
        alerts.append(("warning", f"{name} : une mission attend votre décision depuis {age(oldest)}."))
    crowd = dashboard.volunteers_per_open_mission
    if crowd is not None and crowd >= CROWD_ALERT:
        alerts.append(
            ("info", f"{name} : {crowd:.0f} bénévoles par mission ouverte — des structures peuvent en proposer.")
        )
    if dashboard.open_missions == 0 and dashboard.volunteers > 0:
        alerts.append(("info", f"{name} : {dashboard.volunteers} bénévoles inscrits et aucune mission ouverte."))
    return alerts


def row(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A queue entry as a list shows it: its age, its state."""
    state = "pending" if entry.get("pending") else entry.get("decision", "pending")
    return entry | {"age_hours": hours_since(entry["submitted_at"], now), "state": state}


# ---- the queues ----


def listing_of(request: Request, kind: ItemKind) -> Listing:
    """The filters of a queue page, from its URL (an unknown state or domain is ignored)."""
    query = request.query_params
    state = query.get("etat", "pending")
    wanted_domain = query.get("domaine", "")
    return Listing(
        kind=kind,
        state=state if state in ("", *QUEUE_STATES[kind]) else "pending",
        department=query.get("departement", "").strip()[:3],
        domain=wanted_domain if wanted_domain in DOMAIN_LABELS else "",
        text=query.get("texte", "").strip()[:100],
        waiting_days=int(waited) if (waited := query.get("attente", "")) in WAITING_DAYS else 0,
        newest_first=query.get("tri") == "recentes",
    )


def query_of(wanted: Listing, **change: Any) -> str:
    params = {
        "etat": wanted.state,
        "departement": wanted.department,
        "domaine": wanted.domain,
        "texte": wanted.text,
        "attente": wanted.waiting_days or "",
        "tri": "recentes" if wanted.newest_first else "",
    } | change
    kept = {name: value for name, value in params.items() if value not in ("", None)}
    kept["etat"] = wanted.state  # always: no state at all means every state, not the default (pending)
    return urlencode(kept)


async def queue_page(request: Request, visit: Visit, handlers: ModerationHandlers, kind: ItemKind) -> Response:
    actor = await moderator(visit)
    wanted = listing_of(request, kind)
    found = await handlers.listing(actor, wanted)
    page_count = max(1, ceil(len(found) / PER_PAGE))
    try:
        number = min(max(1, int(request.query_params.get("page", "1"))), page_count)
    except ValueError:
        number = 1
    now = datetime.now(UTC)
    shown = [row(e, now) for e in found[(number - 1) * PER_PAGE : number * PER_PAGE]]
    if kind == "mission":
        for entry in shown:
            organization = await handlers.organization(entry.get("organization_id", "")) or {}
            entry["organization_name"] = organization.get("name", "")
    base = f"/moderation/{KIND_PATHS[kind]}"
    return visit.render(
        "file.html",
        kind=kind,
        wanted=wanted,
        items=shown,
        total=len(found),
        page=number,
        pages=page_count,
        page_url=lambda n: f"{base}?{query_of(wanted, page=n)}",
        export_url=f"{base}.csv?{query_of(wanted)}",
        here=f"{base}?{query_of(wanted, page=number)}",
        departments=departments_of(await handlers.scope(actor)),
    )


@router.get("/moderation/missions")
async def mission_queue(request: Request, visit: VisitOf, handlers: Handlers) -> Response:
    return await queue_page(request, visit, handlers, "mission")


@router.get("/moderation/organizations")
async def organization_queue(request: Request, visit: VisitOf, handlers: Handlers) -> Response:
    return await queue_page(request, visit, handlers, "organization")


@router.post("/moderation/missions")
async def validate_selected(visit: VisitOf, handlers: Handlers) -> Response:
    """Bulk validation of the missions ticked in the queue: each one decided on its own, the refusals told."""
    actor = await moderator(visit)
    chosen = visit.form.getlist("missions")[:PER_PAGE]
    back = visit.form.get("retour")
    back = back if back.startswith("/moderation/missions") else "/moderation/missions"
    validated, refused = [], []
    for mission_id in chosen:
        try:
            await handlers.decide_mission(mission_id, "validate", None, None, actor)
            validated.append(mission_id)
        except (Forbidden, NotFound) as refusal:  # not one of theirs: its title stays unsaid
            refused.append(refusal.detail)
        except Refusal as refusal:
            entry = await handlers.queued(mission_id) or {}
            refused.append(f"« {entry.get('title', mission_id)} » : {refusal.detail}")
    await settled(lambda: decided(handlers, validated))
    if not chosen:
        visit.notify("warning", "Cochez les missions à valider.")
    if validated:
        s = "s" if len(validated) > 1 else ""
        visit.notify("success", f"{len(validated)} mission{s} validée{s}.")
    if refused:
        visit.notify("error", "Non validée : " + " ; ".join(refused))
    return visit.redirect(back)


async def decided(handlers: ModerationHandlers, item_ids: list[str]) -> bool:
    """Whether the queue shows every one of these items decided (the events reached the projection)."""
    for item_id in item_ids:
        entry = await handlers.queued(item_id)
        if entry is None or entry.get("pending"):
            return False
    return True


# ---- an item's file, and the decision ----


@router.get("/moderation/missions/{mission_id}")
async def mission_file(mission_id: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    return await render_mission(visit, handlers, actor, mission_id, Form(DECISION_LABELS))


async def render_mission(
    visit: Visit, handlers: ModerationHandlers, actor: Actor, mission_id: str, form: Form, status: int = 200
) -> Response:
    entry = row(await handlers.item("mission", mission_id, actor), datetime.now(UTC))
    organization = await handlers.organization(entry["organization_id"]) or {}
    return visit.render(
        "mission.html",
        status=status,
        entry=entry,
        content=entry["content"],
        organization=organization,
        lifecycle=await handlers.mission_online(mission_id) or {},
        duplicates=await handlers.possible_duplicates(entry["organization_id"]) if organization else [],
        form=form,
        decisions=list(MISSION_DECISIONS.items()),
        reasons=list(MISSION_REFUSAL_REASONS.items()),
    )


@router.post("/moderation/missions/{mission_id}")
async def decide_mission(mission_id: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    form = decision_form(visit, MISSION_DECISIONS, MISSION_REFUSAL_REASONS)
    decided_page = await carry_out(
        visit, handlers, form, mission_id, f"/moderation/missions/{quote(mission_id)}", handlers.decide_mission, actor
    )
    return decided_page or await render_mission(visit, handlers, actor, mission_id, form, status=422)


@router.get("/moderation/organizations/{organization_id}")
async def organization_file(organization_id: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    return await render_organization(visit, handlers, actor, organization_id, Form(DECISION_LABELS))


async def render_organization(
    visit: Visit, handlers: ModerationHandlers, actor: Actor, organization_id: str, form: Form, status: int = 200
) -> Response:
    entry = row(await handlers.item("organization", organization_id, actor), datetime.now(UTC))
    return visit.render(
        "structure.html",
        status=status,
        entry=entry,
        organization=await handlers.organization(organization_id) or {},
        duplicates=await handlers.possible_duplicates(organization_id),
        form=form,
        decisions=list(ORGANIZATION_DECISIONS.items()),
        reasons=list(ORGANIZATION_REJECTION_REASONS.items()),
    )


@router.post("/moderation/organizations/{organization_id}")
async def decide_organization(organization_id: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    form = decision_form(visit, ORGANIZATION_DECISIONS, ORGANIZATION_REJECTION_REASONS)
    page = f"/moderation/organizations/{quote(organization_id)}"
    decided_page = await carry_out(visit, handlers, form, organization_id, page, handlers.decide_organization, actor)
    return decided_page or await render_organization(visit, handlers, actor, organization_id, form, status=422)


async def carry_out(
    visit: Visit,
    handlers: ModerationHandlers,
    form: Form,
    item_id: str,
    page: str,
    decide: Callable[[str, Any, Any, Any, Actor], Awaitable[object]],
    actor: Actor,
) -> Response | None:
    """A valid decision recorded, followed to the queue, then its item's page again; None when the form or the
    domain refused it (the form then holds the French errors)."""
    if not form.valid:
        return None
    values = form.values
    try:
        await decide(item_id, values["decision"], values["reason"] or None, values["comment"], actor)
    except Refusal as refusal:
        if refusal.code == "not_your_department":
            raise
        form.refused(Refused(422, refusal.code, refusal.detail, refusal.fields))
        return None
    await settled(lambda: decided(handlers, [item_id]))
    visit.notify("success", f"Décision enregistrée : {DONE[values['decision']]}.")
    return visit.redirect(page)


def decision_form(visit: Visit, decisions: dict[Any, str], reasons: dict[Any, str]) -> Form:
    """The decision as sent: a known decision, a known reason or none, a comment of reasonable length."""
    sent = {name: visit.form.get(name) for name in DECISION_LABELS}
    form = Form(DECISION_LABELS, {**sent, "comment": sent["comment"] or None})
    if sent["decision"] not in decisions:
        form.errors["decision"] = "Choisissez une décision."
    if sent["reason"] and sent["reason"] not in reasons:
        form.errors["reason"] = "Choisissez un motif de la liste."
    if len(sent["comment"]) > COMMENT_MAX:
        form.errors["comment"] = f"{COMMENT_MAX} caractères au plus."
    return form


# ---- the territory ----


@router.get("/departements/{department}/territoire")
async def territory(department: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await moderator(visit)
    dashboard = await handlers.department_dashboard(department, actor)
    code = dashboard.department or department
    return visit.render(
        "territoire.html",
        dashboard=dashboard,
        code=code,
        name=department_name(code),
        alerts=territory_alerts(code, dashboard),
    )


# ---- exports: exactly what the filtered list shows, every page of it ----

COLUMNS: dict[ItemKind, tuple[str, ...]] = {
    "mission": ("Identifiant", "Mission", "Structure", "Département", "Domaine", "État", "Soumise le", "Attente (h)"),
    "organization": ("Identifiant", "Structure", "Département", "État", "Inscrite le", "Attente (h)"),
}


async def export(request: Request, visit: Visit, handlers: ModerationHandlers, kind: ItemKind) -> Response:
    actor = await moderator(visit)
    now = datetime.now(UTC)
    found = [row(e, now) for e in await handlers.listing(actor, listing_of(request, kind))]
    text = io.StringIO()
    writer = csv.writer(text, delimiter=";")  # the separator a French spreadsheet opens without asking
    writer.writerow(COLUMNS[kind])
    for entry in found:
        state = STATES[kind][entry["state"]][0]
        if kind == "mission":
            organization = await handlers.organization(entry.get("organization_id", "")) or {}
            writer.writerow(
                (
                    entry["id"],
                    entry["title"],
                    organization.get("name", ""),
                    entry["department"],
                    domain_label(entry.get("domain") or ""),
                    state,
                    entry["submitted_at"],
                    entry["age_hours"],
                )
            )
        else:
            writer.writerow(
                (entry["id"], entry["title"], entry["department"], state, entry["submitted_at"], entry["age_hours"])
            )
    content = "\ufeff" + text.getvalue()  # the BOM: spreadsheets then read the accents as UTF-8
    filename = f"civique-{KIND_PATHS[kind]}-{now:%Y-%m-%d}.csv"
    return visit.download(content.encode(), filename, "text/csv; charset=utf-8")


@router.get("/moderation/missions.csv")
async def mission_export(request: Request, visit: VisitOf, handlers: Handlers) -> Response:
    return await export(request, visit, handlers, "mission")


@router.get("/moderation/organizations.csv")
async def organization_export(request: Request, visit: VisitOf, handlers: Handlers) -> Response:
    return await export(request, visit, handlers, "organization")


# ---- broadcasts: a referent writes to the department's volunteers without a mission ----
# The notifications service owns broadcasts: these pages call the public API on the referent's behalf
# (`Visit.call`), as the website does, rather than import another service (ADR 0012, amendment).

BROADCAST_LABELS = {"subject": "Objet", "body": "Message"}
REPORT_SETTLE_S = 10.0  # the report exists once the notifications' consumer has counted the recipients


def once(visit: Visit, *sent: object) -> dict[str, str]:
    """The Idempotency-Key of a POST to the API: the same form sent twice in a session (a double click, a page
    sent again) is carried out once, the gateway answering the second as the first."""
    seed = json.dumps([visit.session.csrf, *sent], sort_keys=True, ensure_ascii=False)
    return {"idempotency-key": hashlib.sha256(seed.encode()).hexdigest()}


def broadcast_form(visit: Visit) -> Form:
    """The message as typed, checked with the API contract's own limits."""
    body = visit.form.get("body").replace("\r\n", "\n")  # browsers send CRLF; paragraphs are blank lines
    form = Form(BROADCAST_LABELS, {"subject": visit.form.get("subject"), "body": body})
    try:
        Broadcast.model_validate(form.values)
    except ValidationError as invalid:
        for error in invalid.errors():
            form.errors.setdefault(str(error["loc"][0]), field_message(error))
    return form


async def render_broadcast(
    visit: Visit, code: str, form: Form, *, preview: bool = False, status: int = 200
) -> Response:
    audience = expect(await visit.call("GET", f"/departments/{quote(code)}/broadcast-audience")).json()
    return visit.render(
        "message.html",
        status=status,
        code=code,
        name=department_name(code),
        form=form,
        recipients=audience["recipients"],
        preview=preview,
    )


@router.get("/departements/{department}/message")
async def broadcast_page(department: str, visit: VisitOf, handlers: Handlers) -> Response:
    code = await handlers.in_department(await moderator(visit), department)
    return await render_broadcast(visit, code, Form(BROADCAST_LABELS))


@router.post("/departements/{department}/message")
async def broadcast(department: str, visit: VisitOf, handlers: Handlers) -> Response:
    """« Prévisualiser » shows the message and whom it reaches; « Envoyer » posts it, then its report."""
    code = await handlers.in_department(await moderator(visit), department)
    form = broadcast_form(visit)
    if not form.valid or visit.form.get("action") != "envoyer":
        return await render_broadcast(visit, code, form, preview=form.valid, status=200 if form.valid else 422)
    try:
        answer = await visit.call(
            "POST", f"/departments/{quote(code)}/broadcasts", json=form.values, headers=once(visit, code, form.values)
        )
        posted = expect(answer, 202).json()
    except Refused as refusal:
        if refusal.status == 403:
            raise
        form.refused(refusal)
        return await render_broadcast(visit, code, form, status=422)
    report = f"/broadcasts/{quote(posted['broadcast_id'])}"

    async def counted() -> bool:
        return (await visit.call("GET", report)).status_code == 200

    await settled(counted, within_s=REPORT_SETTLE_S)
    visit.notify("success", "Message envoyé : les e-mails partent dans l’ordre, le bilan se met à jour.")
    return visit.redirect(f"/moderation/messages/{quote(posted['broadcast_id'])}")


@router.get("/moderation/messages/{broadcast_id}")
async def broadcast_report(broadcast_id: str, visit: VisitOf) -> Response:
    await moderator(visit)
    try:
        report = BroadcastReport.model_validate(
            expect(await visit.call("GET", f"/broadcasts/{quote(broadcast_id)}")).json()
        )
    except Refused as refusal:
        if refusal.status == 404:
            visit.not_found()
        raise
    return visit.render("bilan.html", report=report, name=department_name(report.department))


# ---- administration (admins): referents, invitations, policies, failed e-mails ----

INVITATION_LABELS = {"email": "Adresse e-mail du référent", "departments": "Départements"}
POLICY_LABELS = {"department": "Département", "policy": "Validation des missions"}
POLICIES: dict[ModerationPolicy, str] = {
    "pre": "Avant publication : chaque mission attend la décision d’un référent",
    "post": "Après publication : les missions paraissent aussitôt, les référents les vérifient ensuite",
}


async def administrator(visit: Visit) -> Actor:
    """An admin: the login page, or a 403 for other roles (referents included)."""
    return await visit.actor("admin")


async def render_administration(
    visit: Visit,
    handlers: ModerationHandlers,
    actor: Actor,
    invitation: Form | None = None,
    policy: Form | None = None,
    status: int = 200,
) -> Response:
    return visit.render(
        "administration.html",
        status=status,
        referents=await handlers.referents(actor),
        invitation=invitation or Form(INVITATION_LABELS),
        policy=policy or Form(POLICY_LABELS),
        departments=departments_of(None),
        policies=list(POLICIES.items()),
        published_first=await handlers.published_first(),
        department_name=department_name,
    )


@router.get("/moderation/administration")
async def administration(visit: VisitOf, handlers: Handlers) -> Response:
    return await render_administration(visit, handlers, await administrator(visit))


@router.post("/moderation/administration/invitation")
async def invite(visit: VisitOf, handlers: Handlers) -> Response:
    """A referent invited by e-mail through the gateway (accounts are its own), appointed to the departments."""
    actor = await administrator(visit)
    typed = visit.form.get("departments")
    form = Form(INVITATION_LABELS, {"email": visit.form.get("email"), "departments": typed})
    form.require("email")
    codes = [code.strip().upper() for code in typed.replace(";", ",").replace(" ", ",").split(",") if code.strip()]
    unknown = [code for code in codes if not known_department(code)]
    if not codes:
        form.errors["departments"] = "Indiquez au moins un département (par exemple 29, 56)."
    elif unknown:
        form.errors["departments"] = f"Département inconnu : {', '.join(unknown)}."
    if form.valid:
        try:
            answer = await visit.call(
                "POST",
                "/referent-invitations",
                json={"email": form.values["email"], "departments": codes},
                headers=once(visit, form.values["email"], codes),
            )
            expect(answer, 201)
        except Refused as refusal:
            if refusal.status == 403:
                raise
            form.refused(refusal)
    if not form.valid:
        return await render_administration(visit, handlers, actor, invitation=form, status=422)
    visit.notify("success", f"Invitation envoyée à {form.values['email']} ({', '.join(codes)}).")
    return visit.redirect("/moderation/administration")


@router.post("/moderation/administration/politique")
async def set_policy(visit: VisitOf, handlers: Handlers) -> Response:
    actor = await administrator(visit)
    form = Form(POLICY_LABELS, {"department": visit.form.get("department"), "policy": visit.form.get("policy")})
    if not known_department(form.value("department")):
        form.errors["department"] = "Choisissez un département de la liste."
    if form.value("policy") not in POLICIES:
        form.errors["policy"] = "Choisissez quand les missions sont validées."
    if not form.valid:
        return await render_administration(visit, handlers, actor, policy=form, status=422)
    code = form.value("department")
    wanted: ModerationPolicy = "pre" if form.value("policy") == "pre" else "post"
    await handlers.change_policy(code, wanted, actor)

    async def changed() -> bool:
        return (await handlers.policy(code)).policy == wanted

    await settled(changed)
    visit.notify(
        "success",
        f"{department_name(code)} ({code}) : validation {'avant' if wanted == 'pre' else 'après'} publication.",
    )
    return visit.redirect("/moderation/administration")


@router.post("/moderation/administration/referents/{referent_id}/revocation")
async def revoke(referent_id: str, visit: VisitOf, handlers: Handlers) -> Response:
    actor = await administrator(visit)
    await handlers.revoke(referent_id, actor)

    async def gone() -> bool:
        return all(referent.id != referent_id for referent in await handlers.referents(actor))

    await settled(gone)
    visit.notify("success", "Référent révoqué : il n’a plus accès à aucun département.")
    return visit.redirect("/moderation/administration")


@router.get("/moderation/administration/echecs")
async def failures(request: Request, visit: VisitOf) -> Response:
    """E-mails given up (or possibly sent before a crash), from the notifications service through the public API."""
    await administrator(visit)
    status = "unconfirmed" if request.query_params.get("etat") == "incertains" else "dead"
    answer = expect(await visit.call("GET", "/notifications/failures", params={"status": status, "limit": 200}))
    return visit.render("echecs.html", failures=[Failure.model_validate(f) for f in answer.json()], status_shown=status)
