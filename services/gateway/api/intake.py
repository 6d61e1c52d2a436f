"""Sign-ups and applications, accepted at once (202) and carried out from the bus; their status."""

import json
from collections import deque
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.api.edge import IntakeOf, VolunteerActing, idempotency_scope, idempotent, limit, operation_id
from services.gateway.domain import check_password
from services.gateway.handlers import Intake
from shared.contracts.gateway import Accepted, RequestStatus, VolunteerSignUp
from shared.contracts.volunteers import ApplicationInput
from shared.events import ApplicationRequested, SignUpRequested

router = APIRouter(generate_unique_id_function=operation_id)
JSON = b"application/json"


class SignUpRoute(APIRoute):
    """POST /api/v1/volunteers, served without FastAPI's request machinery when the request is plain (ADR 0010).

    A spike is thousands of sign-ups a second, and FastAPI's routing, dependency solving and request
    handling cost more than the sign-up itself (docs/benchmarks.md). The app's DirectRoutes middleware
    hands this route's requests to `direct`: a plain request (a JSON body, no Idempotency-Key) that the
    route's own model validates is accepted there, through the same checks in the same order as the
    endpoint below. Anything else (a body the model refuses, another content type, an Idempotency-Key,
    a read that failed) takes the regular path with its body replayed, so every refusal keeps its
    status, code and words.
    """

    async def direct(self, scope: Scope, receive: Receive, send: Send, regular: ASGIApp) -> None:
        if not plain(scope["headers"]):
            await regular(scope, receive, send)
            return
        messages, complete = await read_body(receive)
        replay = replaying(messages, receive)
        form = None
        if complete:
            try:
                form = VolunteerSignUp.model_validate(json.loads(b"".join(m.get("body", b"") for m in messages)))
            except Exception:  # the regular path meets the same fault and words it (400 or 422)
                form = None
        if form is None:
            await regular(scope, replay, send)
            return
        request = Request(scope, replay)
        screen(request, form)
        answer = await accept(request.app.state.runtime.context("gateway").component(Intake), form, None)
        headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", JSON)]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def plain(headers: list[tuple[bytes, bytes]]) -> bool:
    """A JSON body without an Idempotency-Key: what a spike's sign-ups send."""
    json_body = False
    for name, value in headers:
        if name == b"content-type":
            json_body = value.split(b";", 1)[0].strip().lower() == JSON
        elif name == b"idempotency-key":
            return False
    return json_body


async def read_body(receive: Receive) -> tuple[list[Message], bool]:
    """The messages of the body, and whether they hold all of it; a failed read (LimitBody's 413, a
    disconnect) stops there and is met again by the regular path."""
    messages: list[Message] = []
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, False
            if not message.get("more_body", False):
                return messages, True
    except Exception as exc:
        messages.append({"type": "civique.failed_read", "error": exc})
        return messages, False


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` as if nothing had been read: the messages already read first, a failed read raised again."""
    pending = deque(messages)

    async def replay() -> Message:
        if not pending:
            return await receive()
        message = pending.popleft()
        if message["type"] == "civique.failed_read":
            raise message["error"]
        return message

    return replay


def screen(request: Request, body: VolunteerSignUp) -> None:
    """What a sign-up meets before the bus, once its body is valid: the limits, then the password."""
    limit(request, None, "sign_up", email=body.volunteer.email)
    check_password(body.password, email=body.volunteer.email)


async def accept(intake: Intake, body: VolunteerSignUp, idempotency_key: str | None) -> bytes:
    """The 202's body, once the bus holds the sealed command."""
    accepted = await intake.request(
        lambda request_id, sealed: SignUpRequested(request_id=request_id, payload=sealed),
        body.model_dump_json(),  # {"password", "volunteer"}: what the intake worker opens
        None,
        idempotency_key=idempotency_key,
    )
    return json.dumps(accepted).encode()


async def sign_up(body: VolunteerSignUp, request: Request, intake: IntakeOf) -> Response:
    """Accepted at once (202 + request id) once the whole profile is valid: the volunteer and the account
    are created at the platform's pace; GET /api/v1/requests/{id} tells pending, done (with the ids) or
    rejected (an e-mail already taken with another password). 503 + Retry-After when the bus is away."""
    screen(request, body)

    async def produce() -> Response:
        answer = await accept(intake, body, idempotency_scope(request, None))
        return Response(answer, status_code=202, media_type="application/json")

    return await idempotent(request, None, produce)


router.add_api_route(
    "/volunteers",
    sign_up,
    methods=["POST"],
    status_code=202,
    tags=["volunteers"],
    response_model=Accepted,
    route_class_override=SignUpRoute,
)


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
