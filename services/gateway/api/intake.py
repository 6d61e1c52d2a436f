"""Sign-ups and applications, accepted at once (202) and carried out from the bus; their status."""

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from services.gateway.api.edge import IntakeOf, VolunteerActing, idempotency_scope, idempotent, limit, operation_id
from services.gateway.domain import check_password
from shared.contracts.gateway import Accepted, RequestStatus, VolunteerSignUp
from shared.contracts.volunteers import ApplicationInput
from shared.events import ApplicationRequested, SignUpRequested

router = APIRouter(generate_unique_id_function=operation_id)


@router.post("/volunteers", status_code=202, tags=["volunteers"], response_model=Accepted)
async def sign_up(body: VolunteerSignUp, request: Request, intake: IntakeOf) -> Response:
    """Accepted at once (202 + request id) once the whole profile is valid: the volunteer and the account
    are created at the platform's pace; GET /api/v1/requests/{id} tells pending, done (with the ids) or
    rejected (an e-mail already taken with another password). 503 + Retry-After when the bus is away."""
    limit(request, None, "sign_up", email=body.volunteer.email)
    check_password(body.password, email=body.volunteer.email)

    async def produce() -> Response:
        accepted = await intake.request(
            lambda request_id, sealed: SignUpRequested(request_id=request_id, payload=sealed),
            {"volunteer": body.volunteer.model_dump(mode="json"), "password": body.password},
            None,
            idempotency_key=idempotency_scope(request, None),
        )
        return Response(json.dumps(accepted), status_code=202, media_type="application/json")

    return await idempotent(request, None, produce)


@router.post("/missions/{mission_id}/applications", status_code=202, tags=["volunteers"], response_model=Accepted)
async def apply(
    mission_id: str, body: ApplicationInput, request: Request, intake: IntakeOf, actor: VolunteerActing
) -> Response:
    """Accepted at once (202 + request id); the volunteers service decides at its pace."""

    async def produce() -> Response:
        accepted = await intake.request(
            lambda request_id, sealed: ApplicationRequested(
                request_id=request_id, mission_id=mission_id, volunteer_id=actor.id, payload=sealed
            ),
            {"message": body.message},
            actor,
            idempotency_key=idempotency_scope(request, actor),
        )
        return Response(json.dumps(accepted), status_code=202, media_type="application/json")

    return await idempotent(request, actor, produce)


@router.get("/requests/{request_id}", tags=["requests"], response_model=RequestStatus, response_model_exclude_none=True)
async def request_status(request_id: str, request: Request, intake: IntakeOf) -> dict[str, Any]:
    """Where an asynchronous request stands: pending, done (with the resource) or rejected (with the reason)."""
    limit(request, None)
    return await intake.status(request_id)
