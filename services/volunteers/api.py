"""HTTP API of the volunteers service: parse, call a handler (who may act is checked there), answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from services.volunteers.handlers import VolunteersHandlers
from shared.contracts.volunteers import (
    ApplicationCreated,
    ApplicationInput,
    ApplicationRefusal,
    ApplicationView,
    ApplicationWithdrawal,
    MissionApplicationView,
    ProfileChanges,
    SignedUp,
    VolunteerExport,
    VolunteerProfile,
    VolunteerProfileView,
)
from shared.runtime.actors import ActingUser
from shared.runtime.app import provided

router = APIRouter(prefix="/volunteers", tags=["volunteers"])
Handlers = Annotated[VolunteersHandlers, Depends(provided("volunteers", VolunteersHandlers))]


@router.post("", status_code=201)
async def sign_up(body: VolunteerProfile, handlers: Handlers, response: Response) -> SignedUp:
    """Public sign-up; the same e-mail twice gives the same volunteer (200), never an error."""
    signed_up, created = await handlers.sign_up(body)
    if not created:
        response.status_code = 200
    return signed_up


@router.get("/{volunteer_id}")
async def get_profile(volunteer_id: str, actor: ActingUser, handlers: Handlers) -> VolunteerProfileView:
    return await handlers.profile(volunteer_id, actor)


@router.patch("/{volunteer_id}", status_code=204)
async def update_profile(volunteer_id: str, body: ProfileChanges, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.update_profile(volunteer_id, body, actor)


@router.get("/{volunteer_id}/export")
async def export(volunteer_id: str, actor: ActingUser, handlers: Handlers) -> VolunteerExport:
    """GDPR: everything held about the volunteer, as JSON."""
    return await handlers.export(volunteer_id, actor)


@router.delete("/{volunteer_id}", status_code=204)
async def erase(volunteer_id: str, actor: ActingUser, handlers: Handlers) -> None:
    """GDPR: erase the volunteer (crypto-shredding); anonymous facts stay for statistics."""
    await handlers.erase(volunteer_id, actor)


@router.get("/{volunteer_id}/applications")
async def my_applications(volunteer_id: str, actor: ActingUser, handlers: Handlers) -> list[ApplicationView]:
    return await handlers.applications_of(volunteer_id, actor)


@router.post("/missions/{mission_id}/applications", status_code=201)
async def apply(
    mission_id: str,
    body: ApplicationInput,
    actor: ActingUser,
    handlers: Handlers,
    x_intake_request: Annotated[str | None, Header(max_length=64)] = None,
) -> ApplicationCreated:
    """Called by the gateway's intake, which names the application after its request (`X-Intake-Request`)."""
    return await handlers.apply(mission_id, body, actor, request_id=x_intake_request)


@router.get("/missions/{mission_id}/applications")
async def mission_applications(mission_id: str, actor: ActingUser, handlers: Handlers) -> list[MissionApplicationView]:
    """The mission's applications for its managers, with names; contact details once accepted."""
    return await handlers.mission_applications(mission_id, actor)


@router.post("/missions/{mission_id}/applications/{application_id}/accept", status_code=204)
async def accept(mission_id: str, application_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.accept(mission_id, application_id, actor)


@router.post("/missions/{mission_id}/applications/{application_id}/refuse", status_code=204)
async def refuse(
    mission_id: str, application_id: str, body: ApplicationRefusal, actor: ActingUser, handlers: Handlers
) -> None:
    await handlers.refuse(mission_id, application_id, body, actor)


@router.post("/missions/{mission_id}/applications/{application_id}/withdraw", status_code=204)
async def withdraw(
    mission_id: str, application_id: str, body: ApplicationWithdrawal, actor: ActingUser, handlers: Handlers
) -> None:
    await handlers.withdraw(mission_id, application_id, body, actor)


@router.post("/missions/{mission_id}/waitlist", status_code=204)
async def join_waitlist(mission_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.join_waitlist(mission_id, actor)


@router.delete("/missions/{mission_id}/waitlist", status_code=204)
async def leave_waitlist(mission_id: str, actor: ActingUser, handlers: Handlers) -> None:
    await handlers.leave_waitlist(mission_id, actor)
