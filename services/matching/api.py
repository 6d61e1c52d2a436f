"""HTTP API of the matching service: search, recommendations both ways, invitations, territory figures."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.matching.handlers import MatchingHandlers
from shared.contracts.matching import (
    MissionInvitation,
    MissionInvitationSent,
    MissionSearch,
    MissionSearchPage,
    RecommendationLimit,
    RecommendedMission,
    SuggestedVolunteer,
    TerritoryFigures,
)
from shared.events.vocabulary import Department
from shared.runtime.actors import ActingUser
from shared.runtime.app import provided

router = APIRouter(prefix="/matching", tags=["matching"])


async def following(
    handlers: Annotated[MatchingHandlers, Depends(provided("matching", MatchingHandlers))],
) -> MatchingHandlers:
    """The service's handlers, their index caught up with the read model (at most `index_refresh_s` old)."""
    await handlers.follow_read_model()
    return handlers


Handlers = Annotated[MatchingHandlers, Depends(following)]


@router.get("/missions")
async def search(query: Annotated[MissionSearch, Query()], handlers: Handlers) -> MissionSearchPage:
    """Published missions with free places: nearest first within the radius (35 km by default), then soonest."""
    return handlers.search(query)


@router.get("/volunteers/{volunteer_id}/missions")
async def recommend_missions(
    volunteer_id: str, query: Annotated[RecommendationLimit, Query()], actor: ActingUser, handlers: Handlers
) -> list[RecommendedMission]:
    """The missions that suit a volunteer, each with why ("à 4 km, aide alimentaire et d’urgence")."""
    return handlers.recommend_missions(volunteer_id, actor, query.limit)


@router.get("/missions/{mission_id}/volunteers")
async def recommend_volunteers(
    mission_id: str, query: Annotated[RecommendationLimit, Query()], actor: ActingUser, handlers: Handlers
) -> list[SuggestedVolunteer]:
    """Visible volunteers the mission's organisation may invite (no name, no contact)."""
    return await handlers.recommend_volunteers(mission_id, actor, query.limit)


@router.post("/missions/{mission_id}/invitations", status_code=201)
async def invite(
    mission_id: str, body: MissionInvitation, actor: ActingUser, handlers: Handlers
) -> MissionInvitationSent:
    """Once per volunteer and mission, at most two a month per volunteer; the e-mail goes out from the event."""
    return await handlers.invite(mission_id, body.volunteer_id, actor)


@router.get("/territories/{department}")
async def territory(department: Department, actor: ActingUser, handlers: Handlers) -> TerritoryFigures:
    """Per domain: available volunteers, open places, their ratio, missions without candidates, imbalances."""
    return await handlers.territory(department, actor)
