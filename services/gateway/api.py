"""The public API (/api/v1): accounts and sessions, then every use case of the services, by role.

The gateway authenticates (Bearer JWT), checks the role, and relays the call to the owning service
with the acting user; the services check scope again against their own data.
"""

import hashlib
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.gateway.domain import check_password
from services.gateway.handlers import Accounts, Intake, Services, intake_of, services_of
from shared.events import Actor, ApplicationRequested, Role, SignUpRequested
from shared.events.vocabulary import Department
from shared.runtime.app import ServiceContext, service_context
from shared.runtime.ports import DuplicateKeyError
from shared.runtime.problems import Problem

router = APIRouter(prefix="/api/v1")
Context = Annotated[ServiceContext, Depends(service_context("gateway"))]
IDEMPOTENCY = "idempotent_responses"
ANY: frozenset[Role] = frozenset({"volunteer", "manager", "referent", "admin"})
PUBLIC = None
ROLE_NOT_ALLOWED = Problem(403, "role_not_allowed", "Votre rôle ne permet pas cette action.")


@dataclass(frozen=True)
class Route:
    method: str
    public: str
    service: str
    internal: str
    roles: frozenset[Role] | None  # None: open to anonymous visitors too


def roles(*names: Role) -> frozenset[Role]:
    return frozenset(names)


MANAGERS, MODERATORS, VOLUNTEERS = roles("manager", "admin"), roles("referent", "admin"), roles("volunteer")
ROUTES = [
    Route(
        "GET",
        "/organizations/{organization_id}",
        "missions",
        "/missions/organizations/{organization_id}",
        roles("manager", "referent", "admin"),
    ),
    Route(
        "GET",
        "/organizations/{organization_id}/missions",
        "missions",
        "/missions/organizations/{organization_id}/missions",
        MANAGERS,
    ),
    Route(
        "POST",
        "/organizations/{organization_id}/missions",
        "missions",
        "/missions/organizations/{organization_id}/missions",
        MANAGERS,
    ),
    Route("GET", "/missions/{mission_id}", "missions", "/missions/missions/{mission_id}", PUBLIC),
    Route("PUT", "/missions/{mission_id}", "missions", "/missions/missions/{mission_id}", MANAGERS),
    Route("POST", "/missions/{mission_id}/submit", "missions", "/missions/missions/{mission_id}/submit", MANAGERS),
    Route("POST", "/missions/{mission_id}/cancel", "missions", "/missions/missions/{mission_id}/cancel", MANAGERS),
    Route("POST", "/missions/{mission_id}/close", "missions", "/missions/missions/{mission_id}/close", MANAGERS),
    Route(
        "GET",
        "/departments/{department}/moderation",
        "missions",
        "/missions/departments/{department}/moderation",
        PUBLIC,
    ),
    Route("PUT", "/referents/{referent_id}", "moderation", "/moderation/referents/{referent_id}", roles("admin")),
    Route("DELETE", "/referents/{referent_id}", "moderation", "/moderation/referents/{referent_id}", roles("admin")),
    Route("GET", "/referents/{referent_id}", "moderation", "/moderation/referents/{referent_id}", MODERATORS),
    Route(
        "PUT",
        "/departments/{department}/policy",
        "moderation",
        "/moderation/departments/{department}/policy",
        roles("admin"),
    ),
    Route("GET", "/departments/{department}/policy", "moderation", "/moderation/departments/{department}/policy", ANY),
    Route(
        "GET", "/departments/{department}/queue", "moderation", "/moderation/departments/{department}/queue", MODERATORS
    ),
    Route(
        "POST",
        "/moderation/missions/{mission_id}/decision",
        "moderation",
        "/moderation/missions/{mission_id}/decision",
        MODERATORS,
    ),
    Route(
        "POST",
        "/moderation/organizations/{organization_id}/decision",
        "moderation",
        "/moderation/organizations/{organization_id}/decision",
        MODERATORS,
    ),
    Route(
        "GET",
        "/departments/{department}/dashboard",
        "moderation",
        "/moderation/departments/{department}/dashboard",
        MODERATORS,
    ),
    Route("GET", "/dashboard", "moderation", "/moderation/dashboard", roles("admin")),
    Route("GET", "/volunteers/{volunteer_id}", "volunteers", "/volunteers/{volunteer_id}", roles("volunteer", "admin")),
    Route("PATCH", "/volunteers/{volunteer_id}", "volunteers", "/volunteers/{volunteer_id}", VOLUNTEERS),
    Route("GET", "/volunteers/{volunteer_id}/export", "volunteers", "/volunteers/{volunteer_id}/export", VOLUNTEERS),
    Route(
        "GET",
        "/volunteers/{volunteer_id}/applications",
        "volunteers",
        "/volunteers/{volunteer_id}/applications",
        VOLUNTEERS,
    ),
    Route(
        "GET",
        "/missions/{mission_id}/applications",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications",
        MANAGERS,
    ),
    Route(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/accept",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/accept",
        MANAGERS,
    ),
    Route(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/refuse",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/refuse",
        MANAGERS,
    ),
    Route(
        "POST",
        "/missions/{mission_id}/applications/{application_id}/withdraw",
        "volunteers",
        "/volunteers/missions/{mission_id}/applications/{application_id}/withdraw",
        VOLUNTEERS,
    ),
    Route(
        "POST",
        "/missions/{mission_id}/waitlist",
        "volunteers",
        "/volunteers/missions/{mission_id}/waitlist",
        VOLUNTEERS,
    ),
    Route(
        "DELETE",
        "/missions/{mission_id}/waitlist",
        "volunteers",
        "/volunteers/missions/{mission_id}/waitlist",
        VOLUNTEERS,
    ),
    Route("GET", "/search/missions", "matching", "/matching/missions", PUBLIC),
    Route(
        "GET",
        "/volunteers/{volunteer_id}/recommendations",
        "matching",
        "/matching/volunteers/{volunteer_id}/missions",
        roles("volunteer", "admin"),
    ),
    Route(
        "GET",
        "/missions/{mission_id}/suggested-volunteers",
        "matching",
        "/matching/missions/{mission_id}/volunteers",
        MANAGERS,
    ),
    Route(
        "POST",
        "/missions/{mission_id}/invitations",
        "matching",
        "/matching/missions/{mission_id}/invitations",
        MANAGERS,
    ),
    Route("GET", "/departments/{department}/territory", "matching", "/matching/territories/{department}", MODERATORS),
    Route("GET", "/notifications/preferences", "notifications", "/notifications/preferences", ANY),
    Route("PUT", "/notifications/preferences", "notifications", "/notifications/preferences", ANY),
    Route("GET", "/notifications/unsubscribe", "notifications", "/notifications/unsubscribe", PUBLIC),
    Route("POST", "/notifications/unsubscribe", "notifications", "/notifications/unsubscribe", PUBLIC),
    Route(
        "POST",
        "/departments/{department}/broadcasts",
        "notifications",
        "/notifications/departments/{department}/broadcasts",
        MODERATORS,
    ),
    Route("GET", "/broadcasts/{broadcast_id}", "notifications", "/notifications/broadcasts/{broadcast_id}", MODERATORS),
    Route("GET", "/notifications/failures", "notifications", "/notifications/failures", roles("admin")),
]


# ---- calling the services ----


def services(request: Request) -> Services:
    return services_of(request.app.state.runtime)


def relay(answer: httpx.Response) -> Response:
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type", "application/json"),
    )


def accounts_of(request: Request) -> Accounts:
    return Accounts(request.app.state.runtime.context("gateway"))


# ---- rate limits and idempotency ----


class RateLimiter:
    """A sliding window per key, in this process: with several replicas each holds its own share."""

    def __init__(self) -> None:
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key: str, limit: int, window: float = 60.0) -> None:
        moment = time.monotonic()
        hits = self.hits[key]
        while hits and hits[0] <= moment - window:
            hits.popleft()
        if len(hits) >= limit:
            retry_after = max(1, int(hits[0] + window - moment) + 1)
            raise Problem(
                429,
                "too_many_requests",
                "Trop de requêtes : réessayez dans un instant.",
                headers={"Retry-After": str(retry_after)},
            )
        hits.append(moment)


def limit(request: Request, actor: Actor | None, *, sensitive: bool = False) -> None:
    settings = request.app.state.runtime.settings
    if not hasattr(request.app.state, "rate_limiter"):
        request.app.state.rate_limiter = RateLimiter()
    limiter: RateLimiter = request.app.state.rate_limiter
    client = request.client.host if request.client else "unknown"
    per_minute = settings.sensitive_rate_limit_per_minute if sensitive else settings.rate_limit_per_minute
    limiter.check(f"ip:{client}:{'s' if sensitive else 'a'}", per_minute)
    if actor is not None:
        limiter.check(f"account:{actor.id}", settings.rate_limit_per_minute)


async def idempotent(request: Request, actor: Actor | None, produce: Callable[[], Awaitable[Response]]) -> Response:
    """With an Idempotency-Key, the first answer to a POST is stored and replayed to repeats."""
    key = request.headers.get("idempotency-key")
    if request.method != "POST" or not key:
        return await produce()
    if len(key) > 200:
        raise Problem(400, "bad_idempotency_key", "La clé d’idempotence est trop longue.")
    documents = request.app.state.runtime.context("gateway").documents
    owner = actor.id if actor else (request.client.host if request.client else "anonymous")
    doc_id = hashlib.sha256(f"{owner}\n{request.url.path}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(await request.body()).hexdigest()
    try:
        await documents.insert(IDEMPOTENCY, doc_id, {"state": "running", "fingerprint": fingerprint})
    except DuplicateKeyError:
        stored = await documents.get(IDEMPOTENCY, doc_id) or {}
        if stored.get("fingerprint") != fingerprint:
            raise Problem(
                422, "idempotency_key_reused", "Cette clé d’idempotence a servi pour une autre requête."
            ) from None
        if stored.get("state") != "done":
            raise Problem(409, "request_in_progress", "La même requête est en cours de traitement.") from None
        return Response(
            stored["body"].encode(),
            status_code=stored["status"],
            media_type=stored["media_type"],
            headers={"idempotent-replayed": "true"},
        )
    try:
        response = await produce()
    except BaseException:
        await documents.delete(IDEMPOTENCY, doc_id)  # a failure is not an answer: the client may retry
        raise
    await documents.put(
        IDEMPOTENCY,
        doc_id,
        {
            "state": "done",
            "fingerprint": fingerprint,
            "status": response.status_code,
            "body": bytes(response.body).decode(),
            "media_type": response.media_type or "application/json",
        },
    )
    return response


# ---- the relayed routes ----


def relayed(route: Route) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        actor = accounts_of(request).authenticate(request.headers.get("authorization"))
        limit(request, actor)
        if route.roles is not None:
            if actor is None:
                raise Problem(401, "unauthenticated", "Vous devez être connecté.")
            if actor.role not in route.roles:
                raise ROLE_NOT_ALLOWED
        body = await request.body()
        if len(body) > request.app.state.runtime.settings.max_body_bytes:
            raise Problem(413, "payload_too_large", "La requête est trop volumineuse.")

        async def produce() -> Response:
            path = route.internal.format(**{k: quote(v, safe="") for k, v in request.path_params.items()})
            return relay(
                await services(request).call(
                    route.service, route.method, path, actor, content=body or None, params=request.query_params
                )
            )

        return await idempotent(request, actor, produce)

    endpoint.__name__ = (
        f"{route.method.lower()}_{route.internal.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"
    )
    return endpoint


# ---- accounts and sessions ----


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Credentials(Input):
    email: Email
    password: Password


class RefreshInput(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class VolunteerSignUp(Input):
    password: Password
    volunteer: dict[str, Any] = Field(description="The volunteer's profile, as the volunteers service takes it")


class OrganizationRegistration(Input):
    account: Credentials | None = None  # a new manager account; omitted when a signed-in manager adds one
    organization: dict[str, Any]


class Invitation(Input):
    email: Email
    departments: list[Department] = Field(min_length=1, max_length=20)


class InvitationAcceptance(Input):
    password: Password


Authorization = Annotated[str | None, Header()]


@router.post("/auth/login", tags=["auth"])
async def login(body: Credentials, request: Request) -> dict:
    limit(request, None, sensitive=True)
    return await accounts_of(request).login(body.email, body.password)


@router.post("/auth/refresh", tags=["auth"])
async def refresh(body: RefreshInput, request: Request) -> dict:
    limit(request, None, sensitive=True)
    return await accounts_of(request).refresh(body.refresh_token)


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(body: RefreshInput, request: Request) -> None:
    await accounts_of(request).logout(body.refresh_token)


@router.post("/volunteers", status_code=202, tags=["volunteers"])
async def sign_up(body: VolunteerSignUp, request: Request) -> dict:
    """Accepted at once (202 + request id): the volunteer and the account are created at the platform's
    pace; GET /api/v1/requests/{id} tells pending, done (with the ids) or rejected (with the reason)."""
    limit(request, None, sensitive=True)
    check_password(body.password, email=str(body.volunteer.get("email", "")))

    async def produce() -> Response:
        accepted = await intake(request).request(
            lambda request_id, sealed: SignUpRequested(request_id=request_id, payload=sealed),
            {"volunteer": body.volunteer, "password": body.password},
            None,
        )
        return Response(json.dumps(accepted), status_code=202, media_type="application/json")

    return await idempotent(request, None, produce)  # type: ignore[return-value]


class ApplicationInput(Input):
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


@router.post("/missions/{mission_id}/applications", status_code=202, tags=["volunteers"])
async def apply(mission_id: str, body: ApplicationInput, request: Request) -> dict:
    """Accepted at once (202 + request id); the volunteers service decides at its pace."""
    actor = accounts_of(request).authenticate(request.headers.get("authorization"))
    limit(request, actor)
    if actor is None:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
    if actor.role != "volunteer":
        raise ROLE_NOT_ALLOWED

    async def produce() -> Response:
        accepted = await intake(request).request(
            lambda request_id, sealed: ApplicationRequested(
                request_id=request_id, mission_id=mission_id, volunteer_id=actor.id, payload=sealed
            ),
            {"message": body.message},
            actor,
        )
        return Response(json.dumps(accepted), status_code=202, media_type="application/json")

    return await idempotent(request, actor, produce)  # type: ignore[return-value]


@router.get("/requests/{request_id}", tags=["requests"])
async def request_status(request_id: str, request: Request) -> dict:
    """Where an asynchronous request stands: pending, done (with the resource) or rejected (with the reason)."""
    limit(request, None)
    return await intake(request).status(request_id)


def intake(request: Request) -> Intake:
    return intake_of(request.app.state.runtime.context("gateway"))


@router.post("/organizations", status_code=201, tags=["missions"])
async def register_organization(body: OrganizationRegistration, request: Request) -> dict:
    """Registers an organisation; with `account`, creates its manager's account first."""
    limit(request, None, sensitive=True)
    accounts = accounts_of(request)
    actor = accounts.authenticate(request.headers.get("authorization"))
    if body.account is not None:
        account = await accounts.create(body.account.email, body.account.password, "manager")
        actor = Actor(id=account["id"], role="manager")
    if actor is None:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
    if actor.role != "manager":
        raise Problem(403, "forbidden", "Seuls les responsables d’organisation inscrivent une organisation.")

    async def produce() -> Response:
        answer = await services(request).call(
            "missions", "POST", "/missions/organizations", actor, json=body.organization
        )
        if answer.status_code < 300:
            await accounts.add_organization(actor.id, answer.json()["organization_id"])
            return Response(
                json.dumps({**answer.json(), "account_id": actor.id}), status_code=201, media_type="application/json"
            )
        return relay(answer)

    return await idempotent(request, actor, produce)  # type: ignore[return-value]


@router.post("/referent-invitations", status_code=201, tags=["moderation"])
async def invite_referent(body: Invitation, request: Request) -> dict:
    """Admins invite a referent by e-mail; the token goes out by e-mail (notifications service)."""
    accounts = accounts_of(request)
    actor = accounts.authenticate(request.headers.get("authorization"))
    if actor is None:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
    if actor.role != "admin":
        raise Problem(403, "forbidden", "Seuls les administrateurs invitent des référents.")
    token = await accounts.invite(body.email, body.departments, actor)
    return {"token": token, "expires_in": request.app.state.runtime.settings.invitation_ttl_s}


@router.post("/referent-invitations/{token}/accept", status_code=201, tags=["moderation"])
async def accept_invitation(token: str, body: InvitationAcceptance, request: Request) -> dict:
    """The invited referent sets a password; the account is appointed to the invitation's departments."""
    limit(request, None, sensitive=True)
    account, invitation = await accounts_of(request).accept_invitation(token, body.password)
    admin = Actor(id=invitation["invited_by"], role="admin")
    answer = await services(request).call(
        "moderation",
        "PUT",
        f"/moderation/referents/{account['id']}",
        admin,
        json={"departments": invitation["departments"]},
    )
    if answer.status_code >= 300:
        raise Problem(
            502, "appointment_failed", "Le compte est créé mais la nomination a échoué : contactez un administrateur."
        )
    return {"account_id": account["id"], "departments": invitation["departments"]}


# after the gateway's own routes, so that the sign-up of a spike is matched first
for _route in ROUTES:
    router.add_api_route(
        _route.public,
        relayed(_route),
        methods=[_route.method],
        tags=[_route.service],
        summary=f"{_route.method} {_route.public} ({_route.service})",
    )
