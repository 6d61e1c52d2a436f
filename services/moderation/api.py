"""HTTP API of the moderation service (referents' queue, decisions, dashboards; admins' settings):
parse, call a handler (which checks who acts), answer."""

from typing import Annotated

from fastapi import APIRouter, Depends

from services.moderation.handlers import ModerationHandlers
from shared.contracts.moderation import (
    Appointment,
    Dashboard,
    DepartmentPolicy,
    MissionDecisionInput,
    OrganizationDecisionInput,
    PolicyInput,
    QueueEntry,
    ReferentView,
)
from shared.runtime.actors import ActingUser
from shared.runtime.app import provided

router = APIRouter(prefix="/moderation", tags=["moderation"])
Handlers = Annotated[ModerationHandlers, Depends(provided("moderation", ModerationHandlers))]


@router.put("/referents/{referent_id}", status_code=204)
async def appoint_referent(referent_id: str, body: Appointment, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.appoint(referent_id, body.departments, actor)


@router.delete("/referents/{referent_id}", status_code=204)
async def revoke_referent(referent_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.revoke(referent_id, actor)


@router.get("/referents/{referent_id}")
async def get_referent(referent_id: str, actor: ActingUser, handlers: Handlers) -> ReferentView:
    return await handlers.referent(referent_id, actor)


@router.put("/departments/{department}/policy", status_code=204)
async def change_policy(department: str, body: PolicyInput, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.change_policy(department, body.policy, actor)


@router.get("/departments/{department}/policy")
async def get_policy(department: str, actor: ActingUser, handlers: Handlers) -> DepartmentPolicy:
    return await handlers.policy(department)


@router.get("/departments/{department}/queue")
async def queue(department: str, actor: ActingUser, handlers: Handlers) -> list[QueueEntry]:
    return await handlers.queue(department, actor)


@router.post("/missions/{mission_id}/decision", status_code=204)
async def decide_mission(mission_id: str, body: MissionDecisionInput, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.decide_mission(mission_id, body.decision, body.reason, body.comment, actor)


@router.post("/organizations/{organization_id}/decision", status_code=204)
async def decide_organization(
    organization_id: str, body: OrganizationDecisionInput, actor: ActingUser, handlers: Handlers
) -> None:
    await handlers.decide_organization(organization_id, body.decision, body.reason, body.comment, actor)


@router.get("/departments/{department}/dashboard")
async def department_dashboard(department: str, actor: ActingUser, handlers: Handlers) -> Dashboard:
    return await handlers.department_dashboard(department, actor)


@router.get("/dashboard")
async def national_dashboard(actor: ActingUser, handlers: Handlers) -> Dashboard:
    return await handlers.national_dashboard(actor)
