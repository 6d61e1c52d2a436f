"""The edge of the public API: who is calling, from where, how often; idempotency keys; relaying to services."""

import functools
import hashlib
import ipaddress
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import httpx
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from services.gateway.handlers import Accounts, Intake, Services, services_of
from shared.access import ROLE_NOT_ALLOWED
from shared.errors import Conflict, Invalid, Unauthenticated
from shared.events import Actor, Role
from shared.runtime.app import provided
from shared.runtime.ports import DuplicateKeyError
from shared.runtime.problems import Problem

IDEMPOTENCY = "idempotent_responses"
UNAUTHENTICATED = Unauthenticated("unauthenticated", "Vous devez être connecté.")
KEY_TOO_LONG = Invalid("bad_idempotency_key", "La clé d’idempotence est trop longue.")
KEY_REUSED = Invalid("idempotency_key_reused", "Cette clé d’idempotence a servi pour une autre requête.")
IN_PROGRESS = Conflict("request_in_progress", "La même requête est en cours de traitement.")
RELAYED_HEADERS = ("cache-control", "referrer-policy", "retry-after", "location", "x-robots-tag")
AccountsOf = Annotated[Accounts, Depends(provided("gateway", Accounts))]
IntakeOf = Annotated[Intake, Depends(provided("gateway", Intake))]


def operation_id(route: APIRoute) -> str:
    """The operation's name in the OpenAPI document: its function's, which clients' generators turn into methods."""
    return route.name


# ---- who is calling ----


def visitor(request: Request, accounts: AccountsOf) -> Actor | None:
    """The signed-in user, or None for an anonymous visitor; within their rate limits either way."""
    actor = accounts.authenticate(request.headers.get("authorization"))
    limit(request, actor)
    return actor


Visitor = Annotated[Actor | None, Depends(visitor)]


def require(*roles: Role) -> Any:
    """A dependency giving the signed-in user, who must have one of `roles` (401 without a session, 403 else)."""

    def signed_in(actor: Visitor) -> Actor:
        if actor is None:
            raise UNAUTHENTICATED()
        if actor.role not in roles:
            raise ROLE_NOT_ALLOWED()
        return actor

    return Depends(signed_in)


AnyoneActing = Annotated[Actor, require("volunteer", "manager", "referent", "admin")]
VolunteerActing = Annotated[Actor, require("volunteer")]
VolunteerOrAdminActing = Annotated[Actor, require("volunteer", "admin")]
AdminActing = Annotated[Actor, require("admin")]


# ---- calling the services ----


def services(request: Request) -> Services:
    return services_of(request.app.state.runtime)


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


# ---- rate limits ----


class RateLimiter:
    """A sliding window per key, in this process: with several replicas each holds its own share (ADR 0004)."""

    SWEEP_EVERY = 10_000  # checks between two sweeps of the keys no longer hit

    def __init__(self) -> None:
        self.hits: dict[str, deque[float]] = defaultdict(deque)
        self.checks = 0
        self.longest = 0.0  # the longest window checked: a sweep keeps every key still inside its own window

    def check(self, key: str, limit: int, window: float = 60.0) -> None:
        moment = time.monotonic()
        self.longest = max(self.longest, window)
        self._sweep(moment)
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

    def _sweep(self, moment: float) -> None:
        self.checks += 1
        if self.checks % self.SWEEP_EVERY == 0:  # with the longest window: the sign-ups' 1 s one would forget e-mails
            for key in [k for k, hits in self.hits.items() if not hits or hits[-1] <= moment - self.longest]:
                del self.hits[key]


Limit = Literal["default", "sign_up", "login", "registration", "password_reset"]


def limit(request: Request, actor: Actor | None, kind: Limit = "default", *, email: str | None = None) -> None:
    """Rate limits that keep abuse out without refusing a spike's crowd behind one address (ADR 0004).

    Many people share an address during a national announcement (mobile carriers' CGNAT, companies,
    schools), so an address gets a high ceiling; the tight limits key on the account or the e-mail,
    and sign-ups share a ceiling per replica that sheds load before the bus does.
    """
    settings = request.app.state.runtime.settings
    limiter = request.app.state.runtime.held(RateLimiter, RateLimiter)
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


# ---- idempotency keys ----


def idempotency_scope(request: Request, actor: Actor | None) -> str | None:
    """The caller's Idempotency-Key of a POST, made unique per caller and path; None without one."""
    key = request.headers.get("idempotency-key")
    if request.method != "POST" or not key:
        return None
    if len(key) > 200:
        raise KEY_TOO_LONG()
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
            raise KEY_REUSED() from None
        if stored.get("state") != "done":
            raise IN_PROGRESS() from None
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
