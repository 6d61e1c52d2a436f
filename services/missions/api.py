"""HTTP API of the missions service: parse, authorise, call a handler, answer."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.missions.handlers import NOT_FOUND_MISSION, MissionsHandlers
from services.missions.projections import MISSIONS, REFERENTS
from shared import geo
from shared.contracts.organizations import OrganizationProfile
from shared.events import Actor, OrganizationRegistered, new_id
from shared.events.vocabulary import Domain, MissionContent, Place, SafetyConditions
from shared.runtime.actors import ActingUser, Visitor, require_role
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.problems import Problem

router = APIRouter(prefix="/missions", tags=["missions"])
Context = Annotated[ServiceContext, Depends(service_context("missions"))]
Text = Annotated[str, StringConstraints(strip_whitespace=True)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlaceInput(Input):
    address: Annotated[Text, StringConstraints(max_length=300)] | None = None
    postal_code: str
    commune: str | None = None


class MissionInput(Input):
    title: Annotated[Text, StringConstraints(min_length=3, max_length=120)]
    description: Annotated[Text, StringConstraints(min_length=10, max_length=5000)]
    domain: Domain
    remote: bool
    place: PlaceInput | None = None
    places: int = Field(ge=1, le=10_000)
    start_date: date | None = None
    end_date: date | None = None
    recurring: bool = False
    schedule: Annotated[Text, StringConstraints(max_length=300)] | None = None
    safety: SafetyConditions | None = None
    open_to_minors: bool = False
    prerequisites: list[Annotated[Text, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=3
    )


class CancelInput(Input):
    reason: Annotated[Text, StringConstraints(min_length=3, max_length=1000)]


def locate(postal_code: str, commune: str | None, field: str) -> geo.Commune:
    return geo.postal_area_or_refusal(postal_code, field).commune(commune)


def content_of(body: MissionInput, organization: dict) -> MissionContent:
    """A remote mission belongs to its organisation's department; an on-site one to its place's."""
    place = None
    department = organization["department"]
    if not body.remote and body.place is not None:
        commune = locate(body.place.postal_code, body.place.commune, "place.postal_code")
        department = commune.department
        place = Place(
            address=body.place.address,
            postal_code=commune.postal_code,
            commune=commune.name,
            department=department,
            latitude=commune.latitude,
            longitude=commune.longitude,
        )
    data = body.model_dump(exclude={"place"})
    return MissionContent(**data, department=department, place=place)


@router.post("/organizations", status_code=201)
async def register_organization(body: OrganizationProfile, actor: ActingUser, ctx: Context) -> dict:
    require_role(actor, "manager")
    commune = locate(body.postal_code, body.commune, "postal_code")
    registration = OrganizationRegistered(
        organization_id=new_id(),
        **body.model_dump(exclude={"postal_code", "commune"}),
        postal_code=commune.postal_code,
        department=commune.department,
        commune=commune.name,
        manager_ids=[actor.id],
    )
    organization_id = await MissionsHandlers(ctx).register_organization(registration, actor)
    return {"organization_id": organization_id, "department": commune.department, "status": "pending"}


@router.get("/organizations/{organization_id}")
async def get_organization(organization_id: str, actor: ActingUser, ctx: Context) -> dict:
    handlers = MissionsHandlers(ctx)
    organization = await handlers.organization(organization_id)
    await authorize_reader(ctx, actor, organization["manager_ids"], organization["department"])
    return organization


@router.get("/organizations/{organization_id}/missions")
async def organization_missions(
    organization_id: str, actor: ActingUser, ctx: Context, status: str | None = None
) -> list[dict]:
    organization = await MissionsHandlers(ctx).managed_organization(organization_id, actor)
    where = {"organization_id": organization["id"]} | ({"status": status} if status else {})
    return await ctx.documents.find(MISSIONS, where, sort=[("updated_at", -1)], limit=500)


@router.post("/organizations/{organization_id}/missions", status_code=201)
async def draft_mission(organization_id: str, body: MissionInput, actor: ActingUser, ctx: Context) -> dict:
    require_role(actor, "manager", "admin")
    handlers = MissionsHandlers(ctx)
    organization = await handlers.managed_organization(organization_id, actor)
    mission_id = await handlers.draft(organization_id, content_of(body, organization), actor)
    return {"mission_id": mission_id, "status": "draft"}


@router.get("/departments/{department}/moderation")
async def department_moderation(department: str, ctx: Context) -> dict:
    """Which moderation a mission of this department goes through: before (pre) or after (post) publication."""
    return {"department": department, "policy": await MissionsHandlers(ctx).policy(department)}


@router.get("/missions/{mission_id}")
async def get_mission(mission_id: str, actor: Visitor, ctx: Context) -> dict:
    """The public page of a published mission; before that, only its managers, referents and admins."""
    mission = await ctx.documents.get(MISSIONS, mission_id)
    if mission is None:
        raise NOT_FOUND_MISSION
    if mission["status"] in ("published", "filled"):
        return mission
    if actor is None:
        raise NOT_FOUND_MISSION
    organization = await MissionsHandlers(ctx).organization(mission["organization_id"])
    await authorize_reader(ctx, actor, organization["manager_ids"], mission["department"], hide=True)
    return mission


@router.put("/missions/{mission_id}", status_code=204)
async def edit_mission(mission_id: str, body: MissionInput, actor: ActingUser, ctx: Context) -> None:
    handlers = MissionsHandlers(ctx)
    mission = await handlers.managed_mission(mission_id, actor)
    organization = await handlers.organization(mission.organization_id)
    await handlers.edit(mission_id, content_of(body, organization), actor)


@router.post("/missions/{mission_id}/submit", status_code=204)
async def submit_mission(mission_id: str, actor: ActingUser, ctx: Context) -> None:
    await MissionsHandlers(ctx).submit(mission_id, actor)


@router.post("/missions/{mission_id}/cancel", status_code=204)
async def cancel_mission(mission_id: str, body: CancelInput, actor: ActingUser, ctx: Context) -> None:
    await MissionsHandlers(ctx).cancel(mission_id, body.reason, actor)


@router.post("/missions/{mission_id}/close", status_code=204)
async def close_mission(mission_id: str, actor: ActingUser, ctx: Context) -> None:
    await MissionsHandlers(ctx).close(mission_id, actor)


async def authorize_reader(
    ctx: ServiceContext, actor: Actor, manager_ids: list[str], department: str, *, hide: bool = False
) -> None:
    """Managers of the organisation, referents of the department and admins may read."""
    if actor.role == "admin" or actor.id in manager_ids:
        return
    if actor.role == "referent":
        referent = await ctx.documents.get(REFERENTS, actor.id)
        if referent and department in referent["departments"]:
            return
    if hide:
        raise NOT_FOUND_MISSION
    raise Problem(403, "forbidden", "Vous n’avez pas accès à cette ressource.")
