"""HTTP API of the missions service: parse, call a handler (which checks who acts), answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.missions.handlers import MissionsHandlers
from shared.contracts.missions import (
    CancelInput,
    DepartmentModeration,
    DraftedMission,
    MissionInput,
    MissionView,
    OrganizationMissionsQuery,
    OrganizationView,
)
from shared.contracts.organizations import OrganizationProfile, RegisteredOrganization
from shared.runtime.actors import ActingUser, Visitor
from shared.runtime.app import provided

router = APIRouter(prefix="/missions", tags=["missions"])
Handlers = Annotated[MissionsHandlers, Depends(provided("missions", MissionsHandlers))]


@router.post("/organizations", status_code=201)
async def register_organization(
    body: OrganizationProfile, actor: ActingUser, handlers: Handlers
) -> RegisteredOrganization:
    return await handlers.register_organization(body, actor)


@router.get("/organizations/{organization_id}")
async def get_organization(organization_id: str, actor: ActingUser, handlers: Handlers) -> OrganizationView:
    return await handlers.readable_organization(organization_id, actor)


@router.get("/organizations/{organization_id}/missions")
async def organization_missions(
    organization_id: str,
    query: Annotated[OrganizationMissionsQuery, Query()],
    actor: ActingUser,
    handlers: Handlers,
) -> list[MissionView]:
    return await handlers.organization_missions(organization_id, query.status, actor)


@router.post("/organizations/{organization_id}/missions", status_code=201)
async def draft_mission(
    organization_id: str, body: MissionInput, actor: ActingUser, handlers: Handlers
) -> DraftedMission:
    return await handlers.draft(organization_id, body, actor)


@router.get("/departments/{department}/moderation")
async def department_moderation(department: str, handlers: Handlers) -> DepartmentModeration:
    """Which moderation a mission of this department goes through: before (pre) or after (post) publication."""
    return await handlers.department_moderation(department)


@router.get("/missions/{mission_id}")
async def get_mission(mission_id: str, actor: Visitor, handlers: Handlers) -> MissionView:
    """The public page of a published mission; before that, only its managers, referents and admins."""
    return await handlers.mission(mission_id, actor)


@router.put("/missions/{mission_id}", status_code=204)
async def edit_mission(mission_id: str, body: MissionInput, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.edit(mission_id, body, actor)


@router.post("/missions/{mission_id}/submit", status_code=204)
async def submit_mission(mission_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.submit(mission_id, actor)


@router.post("/missions/{mission_id}/cancel", status_code=204)
async def cancel_mission(mission_id: str, body: CancelInput, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.cancel(mission_id, body.reason, actor)


@router.post("/missions/{mission_id}/close", status_code=204)
async def close_mission(mission_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.close(mission_id, actor)
