"""The public website's pages: home, mission search and mission pages, sign-up in steps, login, the volunteer's
space, and the pages the e-mails link to. Thin: read the request, call the public API (`handlers`), render."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.web import forms, handlers, structures
from services.web.forms import STEPS, Filters
from services.web.visits import HOME_OF_ROLE, VisitOf
from shared import geo
from shared.contracts.volunteers import ApplicationView
from shared.web.forms import Form
from shared.web.gateway import Refused
from shared.web.pages import Visit, safe_next, settled

router = APIRouter(include_in_schema=False)
SIGN_UP, SIGNING_UP = "inscription", "inscription_suivi"  # the session's drafts
PENDING_KEPT_S = 15 * 60  # a sign-up's credentials stay in the session this long while it is carried out


# ---- finding a mission ----


@router.get("/")
async def home(visit: VisitOf) -> Response:
    return visit.render("accueil.html", figures=await handlers.figures(visit), form=forms.filters_of({}).form)


@router.get("/missions")
async def search(request: Request, visit: VisitOf) -> Response:
    filters = forms.filters_of({name: request.query_params.getlist(name) for name in request.query_params})
    try:
        found = await handlers.search(visit, filters.query)
    except Refused as refused:
        if refused.status != 422:
            raise
        filters.form.refused(refused, lambda name: {"start": "du", "end": "au", "postal_code": "lieu"}.get(name))
        found = await handlers.search(visit, filters.query.model_copy(update={"start": None, "end": None}))
    pages_count = max(1, -(-found.total // found.per_page))
    return visit.render(
        "missions.html", filters=filters, found=found, pages=pages_count, **search_context(visit, filters)
    )


def search_context(visit: Visit, filters: Filters) -> dict[str, Any]:
    return {
        "form": filters.form,
        "radii": forms.RADII,
        "remote_choices": forms.REMOTE_CHOICES,
        "domain_choices": forms.DOMAIN_CHOICES,
        "tiles": visit.settings.map_tiles_url,
        "attribution": visit.settings.map_attribution,
    }


@router.get("/lieux")
async def places(visit: VisitOf, lieu: str = "") -> Response:
    """Suggestions for a place being typed (htmx fills the field's datalist with them)."""
    return visit.render("lieux.html", communes=geo.suggestions(lieu[:50]) if len(lieu.strip()) >= 2 else [])


@router.get("/missions/{mission_id}")
async def mission_page(mission_id: str, visit: VisitOf) -> Response:
    mission = await handlers.mission(visit, mission_id)
    mine: ApplicationView | None = None
    restricted = False
    signed_in = visit.signed_in
    if signed_in is not None and signed_in.role == "volunteer":
        applications = await handlers.applications(visit, signed_in.account_id)
        mine = next(
            (a for a in applications if a.mission_id == mission_id and a.status in ("pending", "accepted")), None
        )
        if not mission.remote and mine is None:
            restricted = bool((await handlers.profile(visit, signed_in.account_id)).onsite_restricted)
    form = Form({"message": "Un mot pour la structure"})
    return visit.render("mission.html", mission=mission, mine=mine, restricted=restricted, form=form)


@router.post("/missions/{mission_id}/candidature")
async def apply(mission_id: str, visit: VisitOf) -> Response:
    visit.require("volunteer")
    request_id = await handlers.apply(visit, mission_id, visit.form.get("message") or None)
    return visit.redirect(f"/missions/{quote(mission_id)}/candidature?{urlencode({'demande': request_id})}")


@router.get("/missions/{mission_id}/candidature")
async def application_follow_up(mission_id: str, visit: VisitOf, demande: str = "") -> Response:
    """The application accepted (202), followed until the volunteers service decided (htmx polls this page)."""
    visit.require("volunteer")
    if not demande:
        return visit.redirect(f"/missions/{quote(mission_id)}")
    mission, status = await asyncio.gather(handlers.mission(visit, mission_id), handlers.request_status(visit, demande))
    return visit.render("candidature.html", mission=mission, progress=status, demande=demande)


@router.post("/missions/{mission_id}/liste-d-attente")
async def join_waitlist(mission_id: str, visit: VisitOf) -> Response:
    visit.require("volunteer")
    try:
        await handlers.join_waitlist(visit, mission_id)
        visit.notify("success", "Vous êtes sur la liste d’attente : nous vous écrirons si une place se libère.")
    except Refused as refused:
        visit.notify("error", refused.detail)
    return visit.redirect(f"/missions/{quote(mission_id)}")


# ---- signing up, in steps; logging in and out ----


@router.get("/inscription")
async def sign_up_start(visit: VisitOf, suite: str = "") -> Response:
    if suite:
        visit.keep(SIGN_UP, {"suite": safe_next(suite)})
    return visit.redirect(f"/inscription/{STEPS[0].slug}")


@router.get("/inscription/suivi")
async def sign_up_follow_up(visit: VisitOf) -> Response:
    """The sign-up accepted (202), followed until it is done; then the person is logged in (htmx polls it)."""
    pending = visit.session.drafts.get(SIGNING_UP)
    if pending is None or time.time() - pending["since"] > PENDING_KEPT_S:
        visit.forget(SIGNING_UP)
        return visit.redirect("/connexion")
    status = await handlers.request_status(visit, pending["request_id"])
    if status.status == "done":
        visit.sign_in(await handlers.log_in(visit, pending["email"], pending["password"]))
        visit.forget(SIGNING_UP)
        visit.notify("success", "Bienvenue ! Votre inscription est confirmée : vous êtes connecté(e).")
        return visit.redirect(pending.get("suite") or "/mon-espace")
    if status.status == "rejected":
        visit.forget(SIGNING_UP)  # the password goes with it
    return visit.render("inscription_suivi.html", progress=status)


@router.get("/inscription/{step}")
async def sign_up_step(step: str, visit: VisitOf) -> Response:
    index = forms.step_of(step)
    if index is None:
        visit.not_found()
    draft = visit.session.drafts.get(SIGN_UP, {})
    return render_step(visit, index, forms.sign_up_form(draft))


@router.post("/inscription/{step}")
async def sign_up_step_sent(step: str, visit: VisitOf) -> Response:
    index = forms.step_of(step)
    if index is None:
        visit.not_found()
    draft = visit.keep(SIGN_UP, forms.step_values(STEPS[index], visit.form))
    form = forms.sign_up_form(draft)
    first_wrong = forms.check_steps(form, index)
    if first_wrong is not None:
        return render_step(visit, first_wrong, form, status=422)
    if index + 1 < len(STEPS):
        return visit.redirect(f"/inscription/{STEPS[index + 1].slug}")
    try:
        request_id = await handlers.sign_up(visit, form.value("password"), forms.profile_of(form.values))
    except Refused as refused:
        if refused.status not in (400, 409, 422, 429):
            raise
        form.refused(refused, forms.field_of_sign_up)
        wrong = next((i for i, s in enumerate(STEPS) if any(name in form.errors for name in s.fields)), index)
        return render_step(visit, wrong, form, status=422 if refused.status < 429 else 429)
    credentials = {"email": form.value("email"), "password": form.value("password")}
    visit.keep(SIGNING_UP, {"request_id": request_id, "since": time.time(), "suite": draft.get("suite")} | credentials)
    visit.forget(SIGN_UP)
    return visit.redirect("/inscription/suivi")


def render_step(visit: Visit, index: int, form: Form, status: int = 200) -> Response:
    return visit.render(
        "inscription.html",
        status=status,
        steps=STEPS,
        index=index,
        step=STEPS[index],
        form=form,
        domain_choices=forms.DOMAIN_CHOICES,
        availability_choices=forms.AVAILABILITY,
        modes=forms.MODES,
    )


LOGIN_LABELS = {"email": "Adresse e-mail", "password": "Mot de passe"}


@router.get("/connexion")
async def login_page(visit: VisitOf, suite: str = "") -> Response:
    if visit.signed_in is not None:
        return visit.redirect(safe_next(suite, HOME_OF_ROLE[visit.signed_in.role]))
    return visit.render("connexion.html", form=Form(LOGIN_LABELS), suite=safe_next(suite, ""))


@router.post("/connexion")
async def login(visit: VisitOf) -> Response:
    form = Form(LOGIN_LABELS, {"email": visit.form.get("email")})
    suite = safe_next(visit.form.get("suite"), "")
    password = visit.form.raw("password")
    form.require("email")
    if not password:
        form.errors["password"] = "Ce champ est obligatoire."
    if form.valid:
        try:
            signed_in = visit.sign_in(await handlers.log_in(visit, form.value("email"), password))
            return visit.redirect(suite or HOME_OF_ROLE[signed_in.role])
        except Refused as refused:
            form.refused(refused)
    return visit.render("connexion.html", status=422, form=form, suite=suite)


@router.post("/deconnexion")
async def logout(visit: VisitOf) -> Response:
    await handlers.log_out(visit)
    visit.sign_out()
    visit.notify("info", "Vous êtes déconnecté(e).")
    return visit.redirect("/")


# ---- the volunteer's space ----

WITHDRAWAL_REASONS = (
    ("not_available", "Je ne suis plus disponible"),
    ("no_response", "La structure ne m’a pas répondu"),
    ("requirements_not_fulfilled", "Je ne remplis pas les conditions de la mission"),
    ("other", "Une autre raison"),
)
WITHDRAWAL_LABELS = {"reason": "Pourquoi retirez-vous votre candidature ?", "comment": "Précisions"}


@router.get("/mon-espace")
async def my_space(visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    applications, profile, recommended = await asyncio.gather(
        handlers.applications(visit, me.account_id),
        handlers.profile(visit, me.account_id),
        handlers.recommendations(visit, me.account_id),
    )
    titles = await mission_titles(visit, {a.mission_id for a in applications})
    return visit.render(
        "mon_espace.html", applications=applications, titles=titles, profile=profile, recommended=recommended
    )


async def mission_titles(visit: Visit, mission_ids: set[str]) -> dict[str, str]:
    """The titles of the missions still public; the others are named as withdrawn."""

    async def title(mission_id: str) -> str | None:
        answer = await visit.call("GET", f"/missions/{handlers.segment(mission_id)}")
        return str(answer.json()["title"]) if answer.status_code == 200 else None

    found = await asyncio.gather(*(title(m) for m in mission_ids))
    return {m: t for m, t in zip(mission_ids, found, strict=True) if t}


@router.get("/mon-espace/profil")
async def profile_page(visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    profile = await handlers.profile(visit, me.account_id)
    return render_profile(visit, Form(forms.PROFILE_LABELS, forms.profile_values(profile)))


@router.post("/mon-espace/profil")
async def change_profile(visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    form = Form(forms.PROFILE_LABELS, forms.step_values(forms.PROFILE, visit.form))
    changes = forms.check_profile(form)
    if form.valid:
        try:
            await handlers.change_profile(visit, me.account_id, changes)
        except Refused as refused:
            if refused.status not in (400, 409, 422):
                raise
            form.refused(refused, forms.field_of_sign_up)
        else:

            async def changed() -> bool:
                found = await handlers.profile(visit, me.account_id)
                return all(getattr(found, name) == changes[name] for name in ("first_name", "last_name", "mode"))

            await settled(changed)
            visit.notify("success", "Votre profil est enregistré.")
            return visit.redirect("/mon-espace")
    return render_profile(visit, form, status=422)


def render_profile(visit: Visit, form: Form, status: int = 200) -> Response:
    return visit.render(
        "mon_profil.html",
        status=status,
        form=form,
        domain_choices=forms.DOMAIN_CHOICES,
        availability_choices=forms.AVAILABILITY,
        modes=forms.MODES,
    )


@router.get("/mon-espace/missions/{mission_id}/candidatures/{application_id}/retrait")
async def withdrawal_page(mission_id: str, application_id: str, visit: VisitOf) -> Response:
    visit.require("volunteer")
    mission = await handlers.mission(visit, mission_id)
    return visit.render(
        "retrait.html",
        mission=mission,
        application_id=application_id,
        form=Form(WITHDRAWAL_LABELS),
        reasons=WITHDRAWAL_REASONS,
    )


@router.post("/mon-espace/missions/{mission_id}/candidatures/{application_id}/retrait")
async def withdraw(mission_id: str, application_id: str, visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    form = Form(WITHDRAWAL_LABELS, {"reason": visit.form.get("reason"), "comment": visit.form.get("comment")})
    if form.value("reason") not in dict(WITHDRAWAL_REASONS):
        form.errors["reason"] = "Choisissez une raison."
    if form.valid:
        try:
            await handlers.withdraw(
                visit, mission_id, application_id, form.value("reason"), form.value("comment") or None
            )

            async def withdrawn() -> bool:
                found = await handlers.applications(visit, me.account_id)
                return any(a.id == application_id and a.status == "withdrawn" for a in found)

            await settled(withdrawn)
            visit.notify("success", "Votre candidature est retirée : la structure en est informée.")
            return visit.redirect("/mon-espace")
        except Refused as refused:
            form.refused(refused)
    mission = await handlers.mission(visit, mission_id)
    return visit.render(
        "retrait.html",
        status=422,
        mission=mission,
        application_id=application_id,
        form=form,
        reasons=WITHDRAWAL_REASONS,
    )


@router.get("/mon-espace/export")
async def export(visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    content = await handlers.export(visit, me.account_id)
    return visit.download(content, f"civique-mes-donnees-{datetime.now(UTC):%Y-%m-%d}.json", "application/json")


@router.get("/mon-espace/suppression")
async def erasure_page(visit: VisitOf) -> Response:
    visit.require("volunteer")
    return visit.render("suppression.html")


@router.post("/mon-espace/suppression")
async def erase(visit: VisitOf) -> Response:
    me = visit.require("volunteer")
    await handlers.erase(visit, me.account_id)
    visit.sign_out()
    visit.notify("success", "Votre compte et vos données personnelles sont supprimés. Merci pour votre engagement.")
    return visit.redirect("/")


PREFERENCES_LABELS = {
    "news": "Propositions de missions et messages des référents",
    "activity": "Activité de vos missions",
    "frequency": "Quand recevoir l’activité de vos missions ?",
}
FREQUENCIES = (("realtime", "À chaque nouvelle"), ("summary", "Dans un résumé quotidien"))


@router.get("/preferences")
async def preferences_page(visit: VisitOf) -> Response:
    visit.require()
    return render_preferences(visit, await handlers.preferences(visit))


@router.post("/preferences")
async def change_preferences(visit: VisitOf) -> Response:
    me = visit.require()
    change: dict[str, Any] = {"news": visit.form.get("news") == "oui"}
    if me.role != "volunteer":
        change |= {"activity": visit.form.get("activity") == "oui"}
        if visit.form.get("frequency") in dict(FREQUENCIES):
            change["frequency"] = visit.form.get("frequency")
    await handlers.change_preferences(visit, change)
    visit.notify("success", "Vos préférences sont enregistrées.")
    return visit.redirect("/preferences")


def render_preferences(visit: Visit, current: Any) -> Response:
    values = {
        "news": "non" if "news" in current.unsubscribed else "oui",
        "activity": "non" if "activity" in current.unsubscribed else "oui",
        "frequency": current.frequency,
    }
    return visit.render("preferences.html", form=Form(PREFERENCES_LABELS, values), frequencies=FREQUENCIES)


# ---- a forgotten password ----

RESET_LABELS = {"email": "Adresse e-mail", "password": "Nouveau mot de passe"}


@router.get("/mot-de-passe-oublie")
async def forgotten_password_page(visit: VisitOf) -> Response:
    return visit.render("mot_de_passe_oublie.html", form=Form(RESET_LABELS))


@router.post("/mot-de-passe-oublie")
async def forgotten_password(visit: VisitOf) -> Response:
    form = Form(RESET_LABELS, {"email": visit.form.get("email")})
    form.require("email")
    if form.valid:
        try:
            visit.notify("info", await handlers.request_password_reset(visit, form.value("email")))
            return visit.redirect("/connexion")
        except Refused as refused:
            form.refused(refused)
    return visit.render("mot_de_passe_oublie.html", status=422, form=form)


@router.get("/mot-de-passe/nouveau")
async def new_password_page(visit: VisitOf, token: str = "") -> Response:
    return visit.render("mot_de_passe_nouveau.html", form=Form(RESET_LABELS), token=token)


@router.post("/mot-de-passe/nouveau")
async def new_password(visit: VisitOf) -> Response:
    token, password, form = visit.form.get("token"), visit.form.raw("password"), Form(RESET_LABELS)
    if not password:
        form.errors["password"] = "Ce champ est obligatoire."
    if form.valid:
        try:
            await handlers.reset_password(visit, token, password)
            visit.notify("success", "Votre mot de passe est changé : connectez-vous avec lui.")
            return visit.redirect("/connexion")
        except Refused as refused:
            form.refused(refused)
    return visit.render("mot_de_passe_nouveau.html", status=422, form=form, token=token)


# ---- referents: their invitation (their space, /moderation…, is the moderation service's) ----

INVITATION_LABELS = {"password": "Choisissez un mot de passe"}


@router.get("/referents/invitation")
async def invitation_page(visit: VisitOf, token: str = "") -> Response:
    return visit.render("invitation.html", form=Form(INVITATION_LABELS), token=token)


@router.post("/referents/invitation")
async def accept_invitation(visit: VisitOf) -> Response:
    token = visit.form.get("token")
    form = Form(INVITATION_LABELS)
    password = visit.form.raw("password")
    if not password:
        form.errors["password"] = "Ce champ est obligatoire."
    if form.valid:
        try:
            account = await handlers.accept_invitation(visit, token, password)
            departments = ", ".join(account.departments)
            visit.notify(
                "success", f"Votre compte de référent est prêt (départements : {departments}). Connectez-vous."
            )
            return visit.redirect("/connexion")
        except Refused as refused:
            form.refused(refused)
    return visit.render("invitation.html", status=422, form=form, token=token)


router.include_router(structures.router)
