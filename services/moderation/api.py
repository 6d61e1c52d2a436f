"""HTTP API of the moderation service (referents' queue, decisions, dashboards; admins' settings)."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.moderation.domain import MissionDecision, OrganizationDecision
from services.moderation.handlers import ModerationHandlers
from shared import geo
from shared.events.moderation import MissionRefusalReason, OrganizationRejectionReason
from shared.events.vocabulary import Department, ModerationPolicy
from shared.runtime.actors import ActingUser, require_role
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.problems import Problem

router = APIRouter(prefix="/moderation", tags=["moderation"])
Context = Annotated[ServiceContext, Depends(service_context("moderation"))]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Appointment(Input):
    departments: list[Department] = Field(min_length=1, max_length=20)


class PolicyInput(Input):
    policy: ModerationPolicy


class MissionDecisionInput(Input):
    decision: MissionDecision
    reason: MissionRefusalReason | None = None
    comment: Comment | None = None


class OrganizationDecisionInput(Input):
    decision: OrganizationDecision
    reason: OrganizationRejectionReason | None = None
    comment: Comment | None = None


def checked_department(department: str) -> str:
    try:
        return geo.department(department).code
    except LookupError:
        raise Problem(404, "unknown_department", "Ce département n’existe pas.") from None


@router.put("/referents/{referent_id}", status_code=204)
async def appoint_referent(referent_id: str, body: Appointment, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "admin")
    await ModerationHandlers(ctx).appoint(referent_id, body.departments, actor)


@router.delete("/referents/{referent_id}", status_code=204)
async def revoke_referent(referent_id: str, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "admin")
    await ModerationHandlers(ctx).revoke(referent_id, actor)


@router.get("/referents/{referent_id}")
async def get_referent(referent_id: str, actor: ActingUser, ctx: Context) -> dict:
    if actor.role != "admin" and actor.id != referent_id:
        raise Problem(403, "forbidden", "Vous n’avez pas accès à cette ressource.")
    return await ModerationHandlers(ctx).referent(referent_id)


@router.put("/departments/{department}/policy", status_code=204)
async def change_policy(department: str, body: PolicyInput, actor: ActingUser, ctx: Context) -> None:
    require_role(actor, "admin")
    await ModerationHandlers(ctx).change_policy(checked_department(department), body.policy, actor)


@router.get("/departments/{department}/policy")
async def get_policy(department: str, actor: ActingUser, ctx: Context) -> dict:
    department = checked_department(department)
    return {"department": department, "policy": await ModerationHandlers(ctx).policy(department)}


@router.get("/departments/{department}/queue")
async def queue(department: str, actor: ActingUser, ctx: Context) -> list[dict]:
    return await ModerationHandlers(ctx).queue(checked_department(department), actor)


@router.post("/missions/{mission_id}/decision", status_code=204)
async def decide_mission(mission_id: str, body: MissionDecisionInput, actor: ActingUser, ctx: Context) -> None:
    await ModerationHandlers(ctx).decide_mission(mission_id, body.decision, body.reason, body.comment, actor)


@router.post("/organizations/{organization_id}/decision", status_code=204)
async def decide_organization(
    organization_id: str, body: OrganizationDecisionInput, actor: ActingUser, ctx: Context
) -> None:
    await ModerationHandlers(ctx).decide_organization(organization_id, body.decision, body.reason, body.comment, actor)


@router.get("/departments/{department}/dashboard")
async def department_dashboard(department: str, actor: ActingUser, ctx: Context) -> dict:
    handlers = ModerationHandlers(ctx)
    department = checked_department(department)
    await handlers.require_department(actor, department)
    return await handlers.dashboard(department)


@router.get("/dashboard")
async def national_dashboard(actor: ActingUser, ctx: Context) -> dict:
    require_role(actor, "admin")
    return await ModerationHandlers(ctx).dashboard(None)
