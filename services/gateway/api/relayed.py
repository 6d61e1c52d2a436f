"""Every operation of the services, relayed by role: validated at the edge with the service's own models,
then called on the owning service with the acting user (the service checks the scope again)."""

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from services.gateway.api.edge import (
    UNAUTHENTICATED,
    Visitor,
    forwarded_headers,
    idempotent,
    operation_id,
    relay,
    services,
)
from shared.access import ROLE_NOT_ALLOWED
from shared.contracts import (
    Operation,
    ProblemAnswer,
    matching,
    missions,
    moderation,
    notifications,
    volunteers,
)
from shared.events import Actor

OPERATIONS: list[Operation] = [
    *missions.OPERATIONS,
    *moderation.OPERATIONS,
    *volunteers.OPERATIONS,
    *matching.OPERATIONS,
    *notifications.OPERATIONS,
]
COMMON_PROBLEMS = {
    401: "Pas de session, ou une session expirée (`unauthenticated`, `token_expired`).",
    403: "Un rôle ou un périmètre qui ne permet pas cette action (`role_not_allowed`, `not_your_organization`…).",
    422: "Une requête invalide (`invalid_request`, avec `fields`).",
    429: "Trop de requêtes (`too_many_requests`, avec Retry-After).",
}
router = APIRouter(generate_unique_id_function=operation_id)


def allowed(operation: Operation) -> Callable[[Actor | None], Actor | None]:
    """A dependency: the caller, if the operation's roles admit them. Dependencies run before the body is
    validated, so a caller without the right gets 401/403, never a 422 that tells what the body lacks."""

    def check(actor: Visitor) -> Actor | None:
        if operation.roles is None:
            return actor
        if actor is None:
            raise UNAUTHENTICATED()
        if actor.role not in operation.roles:
            raise ROLE_NOT_ALLOWED()
        return actor

    return check


def endpoint_of(operation: Operation) -> Callable[..., Awaitable[Response]]:
    """A route function whose signature declares the operation's path parameters, body and query, so that
    FastAPI validates them and documents them; the call itself is relayed as it came."""

    async def endpoint(request: Request, actor: Actor | None, **_: Any) -> Response:
        body = await request.body()

        async def produce() -> Response:
            path = operation.internal.format(**{k: quote(v, safe="") for k, v in request.path_params.items()})
            answer = await services(request).call(
                operation.service,
                operation.method,
                path,
                actor,
                content=body or None,
                params=request.query_params,
                headers=forwarded_headers(request),
            )
            return relay(answer)

        return await idempotent(request, actor, produce)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter(
            "actor",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[Actor | None, Depends(allowed(operation))],
        ),
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Path()])
            for name in operation.path_parameters
        ),
    ]
    if operation.body is not None:
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[operation.body, Body()])
        )
    if operation.query is not None:
        parameters.append(
            inspect.Parameter("query", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[operation.query, Query()])
        )
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # FastAPI reads it
    endpoint.__name__ = operation.name
    return endpoint


def documented_problems(operation: Operation) -> dict[int | str, dict[str, Any]]:
    statuses = {422} if operation.body or operation.query else set()
    if operation.roles is not None:
        statuses |= {401, 403}
    answers: dict[int | str, dict[str, Any]] = {
        status: {"model": ProblemAnswer, "description": COMMON_PROBLEMS[status]} for status in sorted(statuses)
    }
    if operation.problems:
        answers["4XX"] = {
            "model": ProblemAnswer,
            "description": "Refus propres à l’opération : " + ", ".join(f"`{code}`" for code in operation.problems),
        }
    return answers


def description_of(operation: Operation) -> str:
    who = "tout visiteur" if operation.roles is None else ", ".join(sorted(operation.roles))
    return f"Rôles : {who}. Relayé au service `{operation.service}`."


for _operation in OPERATIONS:
    page = _operation.media_type == "text/html"
    router.add_api_route(
        _operation.path,
        endpoint_of(_operation),
        methods=[_operation.method],
        status_code=_operation.status,
        response_model=None if page else _operation.response,
        response_class=HTMLResponse if page else JSONResponse,
        responses=documented_problems(_operation),
        tags=[_operation.service],
        summary=_operation.summary,
        description=description_of(_operation),
        openapi_extra={"x-roles": sorted(_operation.roles) if _operation.roles is not None else ["anonymous"]},
    )
