"""HTTP API of the matching service: search, recommendations both ways, invitations, territory figures."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.matching.handlers import MatchingHandlers, SearchQuery
from shared.events.vocabulary import Department, Domain
from shared.runtime.actors import ActingUser, require_role
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.problems import Problem

router = APIRouter(prefix="/matching", tags=["matching"])
Context = Annotated[ServiceContext, Depends(service_context("matching"))]
Limit = Annotated[int, Query(ge=1, le=100)]


async def handlers(ctx: Context) -> MatchingHandlers:
    found = MatchingHandlers(ctx)
    await found.follow_read_model()
    return found


Handlers = Annotated[MatchingHandlers, Depends(handlers)]


@router.get("/missions")
async def search(
    handlers: Handlers,
    domain: Annotated[list[Domain] | None, Query()] = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    postal_code: Annotated[str | None, Query(max_length=10)] = None,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float, Query(gt=0, le=200)] = 35.0,
    remote: bool | None = None,
    start: date | None = None,
    end: date | None = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict:
    """Published missions with free places: nearest first within the radius (35 km by default), then soonest."""
    if (latitude is None) != (longitude is None):
        raise Problem(422, "incomplete_coordinates", "Indiquez la latitude et la longitude ensemble.")
    if postal_code is not None:
        latitude, longitude = handlers.locate(postal_code)
    if start and end and end < start:
        raise Problem(
            422, "invalid_dates", "La date de fin précède la date de début.", fields={"end": "avant le début"}
        )
    return handlers.search(
        SearchQuery(tuple(domain or ()), text, latitude, longitude, radius_km, remote, start, end, page, per_page)
    )


@router.get("/volunteers/{volunteer_id}/missions")
async def recommend_missions(volunteer_id: str, actor: ActingUser, handlers: Handlers, limit: Limit = 20) -> list:
    """The missions that suit a volunteer, each with why ("à 4 km, aide alimentaire et d’urgence")."""
    return handlers.recommend_missions(volunteer_id, actor, limit)


@router.get("/missions/{mission_id}/volunteers")
async def recommend_volunteers(mission_id: str, actor: ActingUser, handlers: Handlers, limit: Limit = 20) -> list:
    """Visible volunteers the mission's organisation may invite (no name, no contact)."""
    require_role(actor, "manager", "admin")
    return await handlers.recommend_volunteers(mission_id, actor, limit)


class InvitationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volunteer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


@router.post("/missions/{mission_id}/invitations", status_code=201)
async def invite(mission_id: str, body: InvitationInput, actor: ActingUser, handlers: Handlers) -> dict:
    """Once per volunteer and mission, at most two a month per volunteer; the e-mail goes out from the event."""
    require_role(actor, "manager", "admin")
    return await handlers.invite(mission_id, body.volunteer_id, actor)


@router.get("/territories/{department}")
async def territory(department: Department, actor: ActingUser, handlers: Handlers) -> dict:
    """Per domain: available volunteers, open places, their ratio, missions without candidates, imbalances."""
    require_role(actor, "referent", "admin")
    return await handlers.territory(department, actor)
