"""HTTP API of the volunteers service."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.volunteers.handlers import VolunteersHandlers
from services.volunteers.projections import APPLICATIONS
from shared import geo
from shared.contracts.volunteers import VolunteerProfile
from shared.events import Actor
from shared.events.vocabulary import Availability, Domain, MissionMode
from shared.events.volunteers import ApplicationRefusalReason, WithdrawalReason
from shared.runtime.actors import ActingUser, require_role
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.problems import Problem

router = APIRouter(prefix="/volunteers", tags=["volunteers"])
Context = Annotated[ServiceContext, Depends(service_context("volunteers"))]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileChanges(Input):
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(max_length=30)] | None = None
    health_risk: bool | None = None
    postal_code: str | None = None
    domains: list[Domain] | None = Field(default=None, min_length=1, max_length=4)
    availability: list[Availability] | None = Field(default=None, min_length=1, max_length=3)
    mode: MissionMode | None = None
    max_distance_km: int | None = Field(default=None, ge=0, le=200)
    visible_to_organizations: bool | None = None


class Application(Input):
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class Refusal(Input):
    reason: ApplicationRefusalReason
    comment: Comment | None = None


class Withdrawal(Input):
    reason: WithdrawalReason
    comment: Comment | None = None


def require_self(actor: Actor, volunteer_id: str, *, admin_too: bool = False) -> None:
    if actor.id == volunteer_id and actor.role == "volunteer":
        return
    if admin_too and actor.role == "admin":
        return
    raise Problem(403, "forbidden", "Vous n’avez accès qu’à votre propre profil.")


@router.post("", status_code=201)
async def sign_up(body: VolunteerProfile, ctx: Context, response: Response) -> dict:
    """Public sign-up; the same e-mail twice gives the same volunteer (200), never an error."""
    area = geo.postal_area_or_refusal(body.postal_code)
    personal = body.model_dump(include={"first_name", "last_name", "email", "phone", "birth_date", "health_risk"})
    clear = body.model_dump(include={"domains", "availability", "mode", "max_distance_km", "visible_to_organizations"})
    volunteer_id, created = await VolunteersHandlers(ctx).sign_up(personal, clear, area)
    if not created:
        response.status_code = 200
    return {"volunteer_id": volunteer_id, "department": area.department}


@router.get("/{volunteer_id}")
async def get_profile(volunteer_id: str, actor: ActingUser, ctx: Context) -> dict:
    require_self(actor, volunteer_id, admin_too=True)
    return await VolunteersHandlers(ctx).profile(volunteer_id)


@router.patch("/{volunteer_id}", status_code=204)
async def update_profile(volunteer_id: str, body: ProfileChanges, actor: ActingUser, ctx: Context) -> None:
    require_self(actor, volunteer_id)
    personal = body.model_dump(include={"first_name", "last_name", "phone", "health_risk"}, exclude_none=True)
    clear = body.model_dump(
        include={"domains", "availability", "mode", "max_distance_km", "visible_to_organizations"}, exclude_none=True
    )
    area = geo.postal_area_or_refusal(body.postal_code) if body.postal_code else None
    await VolunteersHandlers(ctx).update_profile(volunteer_id, personal, clear, area, actor)


@router.get("/{volunteer_id}/export")
async def export(volunteer_id: str, actor: ActingUser, ctx: Context) -> dict:
    """GDPR: everything held about the volunteer, as JSON."""
    require_self(actor, volunteer_id)
    return await VolunteersHandlers(ctx).export(volunteer_id)


@router.delete("/{volunteer_id}", status_code=204)
async def erase(volunteer_id: str, actor: ActingUser, ctx: Context) -> None:
    """GDPR: erase the volunteer (crypto-shredding); anonymous facts stay for statistics."""
    require_self(actor, volunteer_id, admin_too=True)
    await VolunteersHandlers(ctx).erase(volunteer_id, actor)


@router.get("/{volunteer_id}/applications")
async def my_applications(volunteer_id: str, actor: ActingUser, ctx: Context) -> list[dict]:
    require_self(actor, volunteer_id)
    return await VolunteersHandlers(ctx).applications_of(volunteer_id)


@router.post("/missions/{mission_id}/applications", status_code=201)
async def apply(mission_id: str, body: Application, actor: ActingUser, ctx: Context) -> dict:
    require_role(actor, "volunteer")
    application_id = await VolunteersHandlers(ctx).apply(mission_id, actor.id, body.message, actor)
    return {"application_id": application_id, "status": "pending"}


@router.get("/missions/{mission_id}/applications")
async def mission_applications(mission_id: str, actor: ActingUser, ctx: Context) -> list[dict]:
    """The mission's applications for its managers, with names; contact details once accepted."""
    handlers = VolunteersHandlers(ctx)
    await handlers.require_manager(await handlers.mission(mission_id), actor)
    listed = []
    for application in await ctx.documents.find(APPLICATIONS, {"mission_id": mission_id}, sort=[("applied_at", 1)]):
        volunteer = await ctx.documents.get("volunteers", application["volunteer_id"]) or {}
        personal: dict = {"erased": True}  # the volunteer erased their data: only the application's facts stay
        if not volunteer.get("erased"):
            events_personal = await handlers.profile(application["volunteer_id"])
            shown = (
                ("first_name", "last_name", "email", "phone")
                if application["status"] == "accepted"
                else ("first_name",)
            )
            personal = {k: events_personal[k] for k in shown}
        listed.append({**await handlers.readable(application), "volunteer": personal})
    return listed


@router.post("/missions/{mission_id}/applications/{application_id}/accept", status_code=204)
async def accept(mission_id: str, application_id: str, actor: ActingUser, ctx: Context) -> None:
    await VolunteersHandlers(ctx).accept(mission_id, application_id, actor)


@router.post("/missions/{mission_id}/applications/{application_id}/refuse", status_code=204)
async def refuse(mission_id: str, application_id: str, body: Refusal, actor: ActingUser, ctx: Context) -> None:
    await VolunteersHandlers(ctx).refuse(mission_id, application_id, body.reason, body.comment, actor)


@router.post("/missions/{mission_id}/applications/{application_id}/withdraw", status_code=204)
async def withdraw(mission_id: str, application_id: str, body: Withdrawal, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "volunteer")
    await VolunteersHandlers(ctx).withdraw(mission_id, application_id, actor.id, body.reason, body.comment, actor)


@router.post("/missions/{mission_id}/waitlist", status_code=204)
async def join_waitlist(mission_id: str, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "volunteer")
    await VolunteersHandlers(ctx).join_waitlist(mission_id, actor.id, actor)


@router.delete("/missions/{mission_id}/waitlist", status_code=204)
async def leave_waitlist(mission_id: str, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "volunteer")
    await VolunteersHandlers(ctx).leave_waitlist(mission_id, actor.id, actor)
