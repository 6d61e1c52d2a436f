"""The organisations' space (/espace-structure): register an organisation with its manager's account, its
missions by state, a mission drafted and submitted, edited (a draft, or the changes a referent requested) and
submitted again, closed, cancelled with a reason; the applications of each mission accepted (the ticked ones
together) or refused."""

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from services.web import forms, handlers
from services.web.forms import MISSION_LABELS, ORGANIZATION_LABELS
from services.web.visits import VisitOf
from shared.contracts.gateway import Credentials
from shared.contracts.missions import CancelInput, MissionInput, MissionView, OrganizationView
from shared.contracts.organizations import OrganizationProfile
from shared.runtime.errors import field_message
from shared.web.forms import Form
from shared.web.gateway import Refused
from shared.web.pages import PageNotFound, Visit, settled

router = APIRouter(prefix="/espace-structure", include_in_schema=False)
REFUSAL_LABELS = {"reason": "Motif du refus", "comment": "Un mot pour le bénévole"}
OPEN = ("published", "filled")  # the missions whose applications are answered


@router.get("")
async def space(visit: VisitOf) -> Response:
    """A manager's organisations and their missions by state; for anyone else, what this space is."""
    if visit.signed_in is None or visit.signed_in.role != "manager":
        return visit.render("espace_structure.html", organizations=[])
    organizations = await managed(visit)
    return visit.render(
        "espace_structure.html",
        organizations=organizations,
        mission_states=forms.MISSION_STATES,
        organization_states=forms.ORGANIZATION_STATES,
    )


async def managed(visit: Visit) -> list[tuple[OrganizationView, list[MissionView]]]:
    """The manager's organisations, each with its missions (newest first)."""
    me = await handlers.me(visit)

    async def with_missions(organization_id: str) -> tuple[OrganizationView, list[MissionView]]:
        return await asyncio.gather(
            handlers.organization(visit, organization_id), handlers.organization_missions(visit, organization_id)
        )

    return list(await asyncio.gather(*(with_missions(o) for o in me.organizations)))


# ---- registering an organisation ----


@router.get("/inscription")
async def registration_page(visit: VisitOf) -> Response:
    return render_registration(visit, Form(ORGANIZATION_LABELS, {"kind": "association"}))


@router.post("/inscription")
async def register(visit: VisitOf) -> Response:
    adding = visit.signed_in is not None and visit.signed_in.role == "manager"  # another organisation of theirs
    values = {name: visit.form.get(name) for name in ORGANIZATION_LABELS if name != "password"}
    form = Form(ORGANIZATION_LABELS, values)
    account = None if adding else {"email": form.value("email"), "password": visit.form.raw("password")}
    checked(form, OrganizationProfile, forms.organization_of(values), lambda loc: "siret" if not loc else loc[0])
    if account is not None:
        checked(form, Credentials, account, lambda loc: loc[0] if loc else "email")
    if form.valid:
        try:
            registered = await handlers.register_organization(visit, forms.organization_of(values), account)
        except Refused as refused:
            form.refused(refused, forms.field_of_registration)
        else:
            if account is not None:
                visit.sign_in(await handlers.log_in(visit, account["email"], account["password"]))
            visit.notify(
                "success",
                f"Votre structure est inscrite. Un référent du département ({registered.department}) la vérifie : "
                "vos missions seront publiées dès qu’il l’aura validée.",
            )
            return visit.redirect("/espace-structure")
    return render_registration(visit, form, status=422)


def render_registration(visit: Visit, form: Form, status: int = 200) -> Response:
    return visit.render(
        "structure_inscription.html",
        status=status,
        form=form,
        kinds=forms.ORGANIZATION_KINDS,
        establishment_types=forms.ESTABLISHMENT_TYPES,
    )


def checked(form: Form, model: Any, data: dict[str, Any], field_of: Any) -> None:
    """`data` checked with the API contract's own `model`: its errors next to the form's fields."""
    try:
        model.model_validate(data)
    except ValidationError as invalid:
        for error in invalid.errors():
            name = field_of(tuple(str(part) for part in error["loc"]))
            if name in form.labels:
                form.errors.setdefault(name, field_message(error))


# ---- missions ----


@router.get("/organisations/{organization_id}/missions/nouvelle")
async def new_mission_page(organization_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    organization = await handlers.organization(visit, organization_id)
    defaults = {
        "remote": "non",
        "places": "1",
        "distancing": "oui",
        "protective_equipment": "oui",
        "supervision": "oui",
    }
    return render_mission_form(visit, organization, Form(MISSION_LABELS, defaults))


@router.post("/organisations/{organization_id}/missions/nouvelle")
async def new_mission(organization_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    form = Form(MISSION_LABELS, forms.mission_values(visit.form))
    mission = forms.mission_of(form.values)
    checked(form, MissionInput, mission, lambda loc: forms.field_of_mission(".".join(loc)))
    if form.valid:
        try:
            mission_id = await handlers.draft_mission(visit, organization_id, mission)
            wanted = "draft"
            if visit.form.get("action") == "soumettre":
                await handlers.submit_mission(visit, mission_id)
                wanted = "submitted"
                visit.notify("success", "Votre mission est soumise : un référent la vérifie avant sa publication.")
            else:
                visit.notify("success", "Votre mission est enregistrée comme brouillon.")
            await settled(lambda: mission_shows(visit, organization_id, mission_id, wanted))
            return visit.redirect("/espace-structure")
        except Refused as refused:
            form.refused(refused, forms.field_of_mission)
    organization = await handlers.organization(visit, organization_id)
    return render_mission_form(visit, organization, form, status=422)


def render_mission_form(
    visit: Visit, organization: OrganizationView, form: Form, status: int = 200, mission: MissionView | None = None
) -> Response:
    """The form of a new mission, or of `mission` edited (with the referent's requested changes above it)."""
    return visit.render(
        "mission_nouvelle.html",
        status=status,
        organization=organization,
        form=form,
        mission=mission,
        domain_choices=forms.DOMAIN_CHOICES,
        remote_choices=forms.REMOTE_OR_NOT,
    )


async def mission_shows(visit: Visit, organization_id: str, mission_id: str, status: str) -> bool:
    """Whether the organisation's missions show this one in `status` (a draft: at all)."""
    found = await handlers.organization_missions(visit, organization_id)
    return any(m.id == mission_id and (m.status == status or status == "draft") for m in found)


@router.post("/missions/{mission_id}/soumission")
async def submit(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    try:
        await handlers.submit_mission(visit, mission_id)
        mission = await handlers.mission(visit, mission_id)
        await settled(lambda: mission_shows(visit, mission.organization_id, mission_id, "submitted"))
        visit.notify("success", "Votre mission est soumise : un référent la vérifie avant sa publication.")
    except Refused as refused:
        visit.notify("error", refused.detail)
    return visit.redirect("/espace-structure")


def editable(mission: MissionView) -> MissionView:
    """The mission, if its content may still change (a draft, or changes requested); the 404 page otherwise."""
    if mission.status not in forms.EDITABLE:
        raise PageNotFound()
    return mission


@router.get("/missions/{mission_id}/modification")
async def edit_mission_page(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    mission = editable(await handlers.mission(visit, mission_id))
    organization = await handlers.organization(visit, mission.organization_id)
    form = Form(MISSION_LABELS, forms.mission_form_values(mission.content))
    return render_mission_form(visit, organization, form, mission=mission)


@router.post("/missions/{mission_id}/modification")
async def edit_mission(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    mission = editable(await handlers.mission(visit, mission_id))
    form = Form(MISSION_LABELS, forms.mission_values(visit.form))
    kept = {"recurring": mission.content.recurring, "prerequisites": mission.content.prerequisites}  # not on the form
    content = kept | forms.mission_of(form.values)
    checked(form, MissionInput, content, lambda loc: forms.field_of_mission(".".join(loc)))
    if form.valid:
        try:
            await handlers.edit_mission(visit, mission_id, content)
            if visit.form.get("action") == "soumettre":
                await handlers.submit_mission(visit, mission_id)
                await settled(lambda: mission_shows(visit, mission.organization_id, mission_id, "submitted"))
                visit.notify("success", "Votre mission est modifiée et soumise : un référent la vérifie à nouveau.")
            else:
                await settled(lambda: titled(visit, mission_id, str(content["title"])))
                visit.notify("success", "Vos modifications sont enregistrées.")
            return visit.redirect("/espace-structure")
        except Refused as refused:
            form.refused(refused, forms.field_of_mission)
    organization = await handlers.organization(visit, mission.organization_id)
    return render_mission_form(visit, organization, form, status=422, mission=mission)


async def titled(visit: Visit, mission_id: str, title: str) -> bool:
    """Whether the mission shows its new content (its title)."""
    return (await handlers.mission(visit, mission_id)).title == title


@router.get("/missions/{mission_id}/cloture")
async def close_page(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    mission = await handlers.mission(visit, mission_id)
    if mission.status not in forms.CLOSABLE:
        raise PageNotFound()
    return visit.render("mission_fin.html", mission=mission, closing=True, form=Form({}))


@router.post("/missions/{mission_id}/cloture")
async def close(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    try:
        await handlers.close_mission(visit, mission_id)
        mission = await handlers.mission(visit, mission_id)
        await settled(lambda: mission_shows(visit, mission.organization_id, mission_id, "closed"))
        visit.notify("success", "Votre mission est terminée : elle n’accepte plus de candidature.")
    except Refused as refused:
        visit.notify("error", refused.detail)
    return visit.redirect("/espace-structure")


@router.get("/missions/{mission_id}/annulation")
async def cancel_page(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    mission = await handlers.mission(visit, mission_id)
    if mission.status not in forms.CANCELLABLE:
        raise PageNotFound()
    return visit.render("mission_fin.html", mission=mission, closing=False, form=Form(forms.CANCEL_LABELS))


@router.post("/missions/{mission_id}/annulation")
async def cancel(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    form = Form(forms.CANCEL_LABELS, {"reason": visit.form.get("reason")})
    if form.require("reason"):
        checked(form, CancelInput, form.values, lambda loc: "reason")
    if form.valid:
        try:
            await handlers.cancel_mission(visit, mission_id, form.value("reason"))
            mission = await handlers.mission(visit, mission_id)
            await settled(lambda: mission_shows(visit, mission.organization_id, mission_id, "cancelled"))
            visit.notify("success", "Votre mission est annulée : ses candidatures le sont aussi.")
            return visit.redirect("/espace-structure")
        except Refused as refused:
            form.refused(refused)
    mission = await handlers.mission(visit, mission_id)
    return visit.render("mission_fin.html", status=422, mission=mission, closing=False, form=form)


# ---- applications ----


@router.get("/missions/{mission_id}/candidatures")
async def mission_applications(mission_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    mission, applications = await asyncio.gather(
        handlers.mission(visit, mission_id), handlers.mission_applications(visit, mission_id)
    )
    return visit.render(
        "candidatures_mission.html",
        mission=mission,
        applications=applications,
        form=Form(REFUSAL_LABELS),
        reasons=forms.REFUSAL_REASONS,
    )


@router.post("/missions/{mission_id}/candidatures/{application_id}/acceptation")
async def accept(mission_id: str, application_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    try:
        await handlers.accept_application(visit, mission_id, application_id)
        await settled(lambda: decided(visit, mission_id, application_id))
        visit.notify("success", "Candidature acceptée : le bénévole reçoit vos coordonnées par e-mail.")
    except Refused as refused:
        visit.notify("error", refused.detail)
    return visit.redirect(f"/espace-structure/missions/{quote(mission_id)}/candidatures")


@router.post("/missions/{mission_id}/candidatures/acceptations")
async def accept_selected(mission_id: str, visit: VisitOf) -> Response:
    """The applications ticked accepted, one after the other; each refusal reported with the volunteer's name."""
    visit.require("manager")
    chosen = visit.form.getlist("candidature")
    if not chosen:
        visit.notify("error", "Cochez les candidatures à accepter.")
        return visit.redirect(f"/espace-structure/missions/{quote(mission_id)}/candidatures")
    applications = await handlers.mission_applications(visit, mission_id)
    names = {a.id: getattr(a.volunteer, "first_name", "un bénévole") for a in applications}
    accepted: list[str] = []
    for application_id in dict.fromkeys(chosen):
        try:
            await handlers.accept_application(visit, mission_id, application_id)
            accepted.append(application_id)
        except Refused as refused:
            visit.notify("error", f"Candidature de {names.get(application_id, 'un bénévole')} : {refused.detail}")
    if accepted:

        async def all_decided() -> bool:
            found = {a.id: a.status for a in await handlers.mission_applications(visit, mission_id)}
            return all(found.get(a) != "pending" for a in accepted)

        await settled(all_decided)
        n = len(accepted)
        visit.notify(
            "success",
            f"{n} candidature{'s' if n > 1 else ''} acceptée{'s' if n > 1 else ''} : "
            "chaque bénévole reçoit vos coordonnées par e-mail.",
        )
    return visit.redirect(f"/espace-structure/missions/{quote(mission_id)}/candidatures")


@router.post("/missions/{mission_id}/candidatures/{application_id}/refus")
async def refuse(mission_id: str, application_id: str, visit: VisitOf) -> Response:
    visit.require("manager")
    reason, comment = visit.form.get("reason"), visit.form.get("comment") or None
    if reason not in dict(forms.REFUSAL_REASONS):
        visit.notify("error", "Choisissez le motif du refus.")
    else:
        try:
            await handlers.refuse_application(visit, mission_id, application_id, reason, comment)
            await settled(lambda: decided(visit, mission_id, application_id))
            visit.notify("success", "Candidature refusée : le bénévole en est informé.")
        except Refused as refused:
            visit.notify("error", refused.detail)
    return visit.redirect(f"/espace-structure/missions/{quote(mission_id)}/candidatures")


async def decided(visit: Visit, mission_id: str, application_id: str) -> bool:
    """Whether the mission's applications show this one answered."""
    found = await handlers.mission_applications(visit, mission_id)
    return any(a.id == application_id and a.status != "pending" for a in found)


@router.get("/candidatures")
async def pending_applications(visit: VisitOf) -> Response:
    """Every application still awaiting an answer, mission by mission (the reminders' link)."""
    visit.require("manager")
    missions = [m for _, found in await managed(visit) for m in found if m.status in OPEN]
    applications = await asyncio.gather(*(handlers.mission_applications(visit, m.id) for m in missions))
    waiting = [
        (mission, [a for a in found if a.status == "pending"])
        for mission, found in zip(missions, applications, strict=True)
    ]
    return visit.render("candidatures.html", waiting=[(m, found) for m, found in waiting if found])
