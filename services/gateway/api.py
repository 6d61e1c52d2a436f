"""The public API (/api/v1): accounts and sessions, then every use case of the services, by role.

The gateway authenticates (Bearer JWT), checks the role, and relays the call to the owning service
with the acting user; the services check scope again against their own data.
"""

import functools
import hashlib
import ipaddress
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, StringConstraints

from services.gateway.domain import check_password
from services.gateway.handlers import EMAIL_TAKEN, Accounts, Intake, Services, intake_of, services_of
from shared.contracts import Input
from shared.contracts.organizations import OrganizationProfile
from shared.contracts.volunteers import VolunteerProfile
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


RELAYED_HEADERS = ("cache-control", "referrer-policy", "retry-after", "location", "x-robots-tag")


def relay(answer: httpx.Response) -> Response:
    """The service's answer as the client gets it: status, body, and the headers meant for the client."""
    headers = {name: answer.headers[name] for name in RELAYED_HEADERS if name in answer.headers}
    if answer.status_code == 204 or not answer.content:
        return Response(status_code=answer.status_code, headers=headers)
    return Response(
        answer.content,
        status_code=answer.status_code,
        headers=headers,
        media_type=answer.headers.get("content-type", "application/json"),
    )


def forwarded_headers(request: Request) -> dict[str, str]:
    """What the service needs of the client's request to answer it: the body's type, the answer's."""
    return {name: request.headers[name] for name in ("content-type", "accept") if name in request.headers}


def accounts_of(request: Request) -> Accounts:
    return Accounts(request.app.state.runtime.context("gateway"))


# ---- rate limits and idempotency ----


class RateLimiter:
    """A sliding window per key, in this process: with several replicas each holds its own share (ADR 0004)."""

    SWEEP_EVERY = 10_000  # checks between two sweeps of the keys no longer hit

    def __init__(self) -> None:
        self.hits: dict[str, deque[float]] = defaultdict(deque)
        self.checks = 0

    def check(self, key: str, limit: int, window: float = 60.0) -> None:
        moment = time.monotonic()
        self._sweep(moment, window)
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

    def _sweep(self, moment: float, window: float) -> None:
        self.checks += 1
        if self.checks % self.SWEEP_EVERY == 0:
            for key in [k for k, hits in self.hits.items() if not hits or hits[-1] <= moment - window]:
                del self.hits[key]


Limit = Literal["default", "sign_up", "login", "registration"]


def limit(request: Request, actor: Actor | None, kind: Limit = "default", *, email: str | None = None) -> None:
    """Rate limits that keep abuse out without refusing a spike's crowd behind one address (ADR 0004).

    Many people share an address during a national announcement (mobile carriers' CGNAT, companies,
    schools), so an address gets a high ceiling; the tight limits key on the account or the e-mail,
    and sign-ups share a ceiling per replica that sheds load before the bus does.
    """
    settings = request.app.state.runtime.settings
    limiter: RateLimiter = request.app.state.runtime.held(RateLimiter, RateLimiter)
    address = client_address(request, settings.trusted_proxies)
    if kind == "default":
        limiter.check(f"ip:{address}", settings.ip_rate_limit_per_minute)
    else:
        limiter.check(f"ip:{address}:sensitive", settings.sensitive_ip_limit_per_minute)
    if kind == "sign_up":
        limiter.check("intake:sign_up", settings.sign_up_limit_per_second, window=1.0)
    if email is not None:
        limiter.check(f"email:{kind}:{email.strip().lower()}", settings.sensitive_rate_limit_per_minute)
    if actor is not None:
        limiter.check(f"account:{actor.id}", settings.rate_limit_per_minute)


def client_address(request: Request, trusted_proxies: str) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (then X-Forwarded-For's
    right-most address that is not one), so a forged header from anyone else changes nothing."""
    peer = request.client.host if request.client else "unknown"
    trusted = trusted_networks(trusted_proxies)
    if not trusted or not in_networks(peer, trusted):
        return peer
    forwarded = [hop.strip() for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    for hop in reversed(forwarded):
        if not in_networks(hop, trusted):
            return hop
    return peer


@functools.cache
def trusted_networks(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in setting.split(",") if n.strip())


def in_networks(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # not an address: never a trusted hop
    return any(ip in network for network in networks)


def idempotency_scope(request: Request, actor: Actor | None) -> str | None:
    """The caller's Idempotency-Key of a POST, made unique per caller and path; None without one."""
    key = request.headers.get("idempotency-key")
    if request.method != "POST" or not key:
        return None
    if len(key) > 200:
        raise Problem(400, "bad_idempotency_key", "La clé d’idempotence est trop longue.")
    owner = actor.id if actor else client_address(request, request.app.state.runtime.settings.trusted_proxies)
    return hashlib.sha256(f"{owner}\n{request.url.path}\n{key}".encode()).hexdigest()


async def idempotent(request: Request, actor: Actor | None, produce: Callable[[], Awaitable[Response]]) -> Response:
    """With an Idempotency-Key, the first answer to a POST is stored and replayed to repeats."""
    doc_id = idempotency_scope(request, actor)
    if doc_id is None:
        return await produce()
    documents = request.app.state.runtime.context("gateway").documents
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

        async def produce() -> Response:
            path = route.internal.format(**{k: quote(v, safe="") for k, v in request.path_params.items()})
            return relay(
                await services(request).call(
                    route.service,
                    route.method,
                    path,
                    actor,
                    content=body or None,
                    params=request.query_params,
                    headers=forwarded_headers(request),
                )
            )

        return await idempotent(request, actor, produce)

    endpoint.__name__ = (
        f"{route.method.lower()}_{route.internal.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"
    )
    return endpoint


# ---- accounts and sessions ----


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
    volunteer: VolunteerProfile


class OrganizationRegistration(Input):
    account: Credentials | None = None  # a new manager account; omitted when a signed-in manager adds one
    organization: OrganizationProfile


class Invitation(Input):
    email: Email
    departments: list[Department] = Field(min_length=1, max_length=20)


class InvitationAcceptance(Input):
    password: Password


def signed_in(request: Request, *roles: Role) -> Actor:
    """The acting user, who must have one of `roles`: 401 without a session, 403 with another role."""
    actor = accounts_of(request).authenticate(request.headers.get("authorization"))
    if actor is None:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
    if actor.role not in roles:
        raise ROLE_NOT_ALLOWED
    return actor


@router.post("/auth/login", tags=["auth"])
async def login(body: Credentials, request: Request) -> dict:
    limit(request, None, "login", email=body.email)
    return await accounts_of(request).login(body.email, body.password)


@router.post("/auth/refresh", tags=["auth"])
async def refresh(body: RefreshInput, request: Request) -> dict:
    limit(request, None, "login")
    return await accounts_of(request).refresh(body.refresh_token)


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(body: RefreshInput, request: Request) -> None:
    await accounts_of(request).logout(body.refresh_token)


@router.post("/volunteers", status_code=202, tags=["volunteers"])
async def sign_up(body: VolunteerSignUp, request: Request) -> dict:
    """Accepted at once (202 + request id) once the whole profile is valid: the volunteer and the account
    are created at the platform's pace; GET /api/v1/requests/{id} tells pending, done (with the ids) or
    rejected (an e-mail already taken with another password). 503 + Retry-After when the bus is away."""
    limit(request, None, "sign_up", email=body.volunteer.email)
    check_password(body.password, email=body.volunteer.email)

    async def produce() -> Response:
        accepted = await intake(request).request(
            lambda request_id, sealed: SignUpRequested(request_id=request_id, payload=sealed),
            {"volunteer": body.volunteer.model_dump(mode="json"), "password": body.password},
            None,
            idempotency_key=idempotency_scope(request, None),
        )
        return Response(json.dumps(accepted), status_code=202, media_type="application/json")

    return await idempotent(request, None, produce)  # type: ignore[return-value]


@router.delete("/volunteers/{volunteer_id}", status_code=204, tags=["volunteers"])
async def erase_volunteer(volunteer_id: str, request: Request) -> Response:
    """GDPR erasure, by the volunteer or an admin: applications cancelled, personal data shredded
    everywhere (crypto-shredding), the account closed."""
    actor = signed_in(request, "volunteer", "admin")
    limit(request, actor)
    answer = await services(request).call("volunteers", "DELETE", f"/volunteers/{quote(volunteer_id, safe='')}", actor)
    if answer.status_code == 204:
        await accounts_of(request).delete(volunteer_id)
    return relay(answer)


class ApplicationInput(Input):
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


@router.post("/missions/{mission_id}/applications", status_code=202, tags=["volunteers"])
async def apply(mission_id: str, body: ApplicationInput, request: Request) -> dict:
    """Accepted at once (202 + request id); the volunteers service decides at its pace."""
    actor = signed_in(request, "volunteer")
    limit(request, actor)

    async def produce() -> Response:
        accepted = await intake(request).request(
            lambda request_id, sealed: ApplicationRequested(
                request_id=request_id, mission_id=mission_id, volunteer_id=actor.id, payload=sealed
            ),
            {"message": body.message},
            actor,
            idempotency_key=idempotency_scope(request, actor),
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
    """Registers an organisation; with `account`, opens its manager's account too. The whole request is
    checked first, and the account is announced (welcome e-mail) only once the organisation is registered:
    a refused registration leaves nothing behind."""
    limit(request, None, "registration", email=body.account.email if body.account else None)
    accounts = accounts_of(request)
    actor = accounts.authenticate(request.headers.get("authorization"))
    if body.account is None and actor is None:
        raise Problem(401, "unauthenticated", "Vous devez être connecté.")
    if body.account is None and actor is not None and actor.role != "manager":
        raise Problem(403, "forbidden", "Seuls les responsables d’organisation inscrivent une organisation.")
    if body.account is not None:
        check_password(body.account.password, email=body.account.email)
        if await accounts.by_email(body.account.email) is not None:
            raise EMAIL_TAKEN

    async def produce() -> Response:
        account = None
        manager = actor
        if body.account is not None:
            account = await accounts.create(body.account.email, body.account.password, "manager", announce=False)
            manager = Actor(id=account["id"], role="manager")
        assert manager is not None
        answer = await services(request).call(
            "missions", "POST", "/missions/organizations", manager, json=body.organization.model_dump(mode="json")
        )
        if answer.status_code >= 300:
            if account is not None:
                await accounts.delete(account["id"])
            return relay(answer)
        await accounts.add_organization(manager.id, answer.json()["organization_id"])
        if account is not None:
            await accounts.announce(account)
        return Response(
            json.dumps({**answer.json(), "account_id": manager.id}), status_code=201, media_type="application/json"
        )

    return await idempotent(request, actor, produce)  # type: ignore[return-value]


@router.post("/referent-invitations", status_code=201, tags=["moderation"])
async def invite_referent(body: Invitation, request: Request) -> dict:
    """Admins invite a referent by e-mail; the link with its token travels only in the e-mail
    (notifications service), never in this answer."""
    actor = signed_in(request, "admin")
    limit(request, actor)
    invitation_id = await accounts_of(request).invite(body.email, body.departments, actor)
    return {
        "invitation_id": invitation_id,
        "departments": body.departments,
        "expires_in": request.app.state.runtime.settings.invitation_ttl_s,
    }


@router.post("/referent-invitations/{token}/accept", status_code=201, tags=["moderation"])
async def accept_invitation(token: str, body: InvitationAcceptance, request: Request) -> dict:
    """The invited referent sets a password; the account is appointed to the invitation's departments."""
    limit(request, None, "registration")
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
