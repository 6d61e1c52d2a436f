"""Gateway application layer: accounts, sessions (JWT + refresh tokens), referent invitations."""

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import structlog
from aiokafka.errors import KafkaError
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from prometheus_client import Counter

from services.gateway import domain
from shared.events import (
    AccountOpened,
    Actor,
    ApplicationRequested,
    Envelope,
    Event,
    IntakeCommand,
    ReferentInvited,
    RequestCompleted,
    RequestRejected,
    Role,
    SignUpRequested,
    new_id,
)
from shared.events.vocabulary import Sealed
from shared.runtime.actors import actor_headers
from shared.runtime.app import Runtime, ServiceContext
from shared.runtime.ports import ConcurrencyError, DuplicateKeyError, OutgoingMessage
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events, load_stream
from shared.runtime.vault import Vault

ACCOUNTS, ATTEMPTS, REFRESH_TOKENS, INVITATIONS = "accounts", "login_attempts", "refresh_tokens", "invitations"
# argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane): ~35 ms of one core per sign-up of a spike
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# verifying against this when the e-mail is unknown makes both failures cost the same time
DUMMY_HASH = HASHER.hash(domain.new_secret())
ALGORITHM = "HS256"
ANONYMOUS = Actor(id="anonymous", role="system")
EMAIL_TAKEN = Problem(409, "email_taken", "Un compte existe déjà avec cette adresse : connectez-vous.")
BUS_UNAVAILABLE = Problem(
    503,
    "intake_unavailable",
    "Votre demande n’a pas pu être enregistrée : réessayez dans quelques secondes. Avec le même en-tête "
    "Idempotency-Key, un nouvel essai ne crée pas de doublon.",
    headers={"Retry-After": "5"},
)
INTAKE_ACCEPTED = Counter(
    "civique_intake_accepted", "Commands accepted with a 202, by type (per process: read it with rate())", ["type"]
)
INTAKE_REFUSED = Counter(
    "civique_intake_unavailable", "Commands answered 503 because the bus did not acknowledge them in time", ["type"]
)
log = structlog.get_logger("civique.gateway")


def now() -> datetime:
    return datetime.now(UTC)


class Accounts:
    def __init__(self, ctx: ServiceContext) -> None:
        self.documents, self.store, self.settings = ctx.documents, ctx.store, ctx.settings
        self.vault = Vault(ctx.keys)
        assert self.settings.jwt_secret, "the gateway needs CIVIQUE_JWT_SECRET"
        self.secret = self.settings.jwt_secret

    def email_key(self, email: str) -> str:
        pepper = self.settings.personal_data_pepper.encode()
        return hmac.new(pepper, email.strip().lower().encode(), hashlib.sha256).hexdigest()

    async def setup(self) -> None:
        await self.documents.ensure_index(ACCOUNTS, ["email_key"], unique=True)

    # ---- accounts ----

    async def create(
        self,
        email: str,
        password: str,
        role: Role,
        account_id: str | None = None,
        scope: domain.Scope = domain.NO_SCOPE,
        announce: bool = True,
    ) -> dict[str, Any]:
        """A new account; the same e-mail and password again returns the existing one (idempotent).

        Without `announce` nobody hears of it (no welcome e-mail) until `announce` is called: a
        registration that may still be refused opens its account that way.
        """
        domain.check_password(password, email=email)
        account_id = account_id or new_id()
        account = {
            "id": account_id,
            "email_key": self.email_key(email),
            "role": role,
            "email": (await self.vault.seal(account_id, {"email": email.strip().lower()})).model_dump(),
            # argon2 is deliberately slow (~0.1 s of CPU): off the event loop, which keeps answering
            "password_hash": await asyncio.to_thread(HASHER.hash, password),
            "organizations": list(scope.organizations),
            "departments": list(scope.departments),
            "created_at": now().isoformat(),
        }
        try:
            await self.documents.insert(ACCOUNTS, account_id, account)
        except DuplicateKeyError:
            existing = await self.by_email(email)
            if existing and existing["role"] == role and await self._verify(existing["password_hash"], password):
                if announce:  # a retry after a crash between the two writes announces it
                    await self.announce(existing)
                return existing
            raise EMAIL_TAKEN from None
        if announce:
            await self.announce(account)
        return account

    async def announce(self, account: dict[str, Any]) -> None:
        """AccountOpened, once: the welcome e-mail follows."""
        opened = AccountOpened(account_id=account["id"], role=account["role"], email=Sealed(**account["email"]))
        with contextlib.suppress(ConcurrencyError):  # announced already
            await append_events(self.store, opened.stream_id(), 0, [opened])

    async def by_email(self, email: str) -> dict[str, Any] | None:
        found = await self.documents.find(ACCOUNTS, {"email_key": self.email_key(email)}, limit=1)
        return found[0] if found else None

    async def add_organization(self, account_id: str, organization_id: str) -> None:
        account = await self.documents.get(ACCOUNTS, account_id)
        if account and organization_id not in account["organizations"]:
            await self.documents.put(
                ACCOUNTS, account_id, {**account, "organizations": [*account["organizations"], organization_id]}
            )

    async def delete(self, account_id: str) -> None:
        """Erasure (or a registration refused): the account and its sealed e-mail go; its sessions with it."""
        await self.documents.delete(ACCOUNTS, account_id)
        await self.vault.forget(account_id)

    @staticmethod
    async def _verify(password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return HASHER.verify(password_hash, password)
            except (VerifyMismatchError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    # ---- sessions ----

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """Tokens for valid credentials. Unknown e-mail and wrong password answer alike, in the same time."""
        key = self.email_key(email)
        attempts = await self.documents.get(ATTEMPTS, key) or {"failures": 0, "locked_until": None}
        if attempts["locked_until"] and datetime.fromisoformat(attempts["locked_until"]) > now():
            raise domain.LOCKED
        account = await self.by_email(email)
        valid = await self._verify(account["password_hash"] if account else DUMMY_HASH, password)
        if not (valid and account):
            failures = attempts["failures"] + 1
            locked = domain.lock_after(failures, now())
            await self.documents.put(
                ATTEMPTS, key, {"failures": failures, "locked_until": locked.isoformat() if locked else None}
            )
            raise domain.INVALID_CREDENTIALS
        if attempts["failures"]:
            await self.documents.delete(ATTEMPTS, key)
        return await self.issue(account)

    async def issue(self, account: dict[str, Any]) -> dict[str, Any]:
        issued = now()
        claims = {
            "sub": account["id"],
            "role": account["role"],
            "iat": issued,
            "exp": issued + timedelta(seconds=self.settings.access_token_ttl_s),
            "jti": new_id(),
        }
        refresh = domain.new_secret()
        await self.documents.insert(
            REFRESH_TOKENS,
            domain.digest(refresh),
            {
                "account_id": account["id"],
                "revoked": False,
                "expires_at": (issued + timedelta(seconds=self.settings.refresh_token_ttl_s)).isoformat(),
            },
        )
        return {
            "access_token": jwt.encode(claims, self.secret, algorithm=ALGORITHM),
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "role": account["role"],
            "account_id": account["id"],
        }

    async def refresh(self, token: str) -> dict[str, Any]:
        """New tokens for a live refresh token, which is used up (rotation)."""
        stored = await self.documents.get(REFRESH_TOKENS, domain.digest(token))
        if stored is None or stored["revoked"] or datetime.fromisoformat(stored["expires_at"]) <= now():
            raise Problem(401, "invalid_refresh_token", "Votre session a expiré : reconnectez-vous.")
        await self.documents.put(REFRESH_TOKENS, domain.digest(token), {**stored, "revoked": True})
        account = await self.documents.get(ACCOUNTS, stored["account_id"])
        if account is None:
            raise Problem(401, "invalid_refresh_token", "Votre session a expiré : reconnectez-vous.")
        return await self.issue(account)

    async def logout(self, token: str) -> None:
        stored = await self.documents.get(REFRESH_TOKENS, domain.digest(token))
        if stored is not None:
            await self.documents.put(REFRESH_TOKENS, domain.digest(token), {**stored, "revoked": True})

    def authenticate(self, authorization: str | None) -> Actor | None:
        """The actor of a Bearer access token; None without one; 401 for a bad or expired one."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "unauthenticated", "Vous devez être connecté.")
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Problem(401, "token_expired", "Votre session a expiré : reconnectez-vous.") from None
        except jwt.InvalidTokenError:
            raise Problem(401, "unauthenticated", "Vous devez être connecté.") from None
        return Actor(id=claims["sub"], role=claims["role"])

    # ---- referent invitations ----

    async def invite(self, email: str, departments: list[str], admin: Actor) -> str:
        """A single-use invitation token, e-mailed by the notifications service (ReferentInvited) and
        known to nobody else; returns the invitation's id."""
        token, email = domain.new_secret(), email.strip().lower()
        expires_at = now() + timedelta(seconds=self.settings.invitation_ttl_s)
        await self.documents.insert(
            INVITATIONS,
            domain.digest(token),
            {
                "email": (await self.vault.seal(domain.digest(token), {"email": email})).model_dump(),
                "departments": departments,
                "invited_by": admin.id,
                "used": False,
                "expires_at": expires_at.isoformat(),
            },
        )
        invited = ReferentInvited(
            invitation_id=new_id(),
            departments=departments,
            invited_by=admin.id,
            expires_at=expires_at,
            invitation=await self.vault.seal(domain.digest(token), {"email": email, "token": token}),
        )
        await append_events(self.store, invited.stream_id(), 0, [invited], actor=admin)
        return invited.invitation_id

    async def invitation(self, token: str) -> dict[str, Any]:
        found = await self.documents.get(INVITATIONS, domain.digest(token))
        if found is None or found["used"] or datetime.fromisoformat(found["expires_at"]) <= now():
            raise Problem(410, "invitation_invalid", "Cette invitation a déjà servi ou a expiré.")
        return found

    async def accept_invitation(self, token: str, password: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The referent account (and the invitation, to appoint the referent to its departments)."""
        invitation = await self.invitation(token)
        email = (await self.vault.open(Sealed(**invitation["email"])) or {}).get("email")
        if email is None:
            raise Problem(410, "invitation_invalid", "Cette invitation a déjà servi ou a expiré.")
        account = await self.create(
            email, password, "referent", scope=domain.Scope(departments=tuple(invitation["departments"]))
        )
        await self.documents.put(INVITATIONS, domain.digest(token), {**invitation, "used": True})
        await self.vault.forget(domain.digest(token))
        return account, invitation


# ---- calling the services ----


class Services:
    """HTTP to the services: in process for those this process hosts, over the network for the others."""

    def __init__(self, runtime: Runtime) -> None:
        self.token = runtime.settings.internal_token
        in_process = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url="http://in-process", timeout=10
        )
        urls = {
            "missions": runtime.settings.missions_url,
            "moderation": runtime.settings.moderation_url,
            "volunteers": runtime.settings.volunteers_url,
            "matching": runtime.settings.matching_url,
            "notifications": runtime.settings.notifications_url,
        }
        self.clients = {
            name: in_process
            if name in runtime.running
            else httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, connect=2))
            for name, url in urls.items()
        }

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        actor: Actor | None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"content-type": "application/json", **(headers or {})}
        if actor is not None:
            headers |= actor_headers(actor, self.token)
        elif self.token:
            headers["x-internal-token"] = self.token
        attempts = 3 if method in ("GET", "PUT", "DELETE") else 1  # only idempotent calls are retried
        for attempt in range(1, attempts + 1):
            try:
                return await self.clients[service].request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == attempts:
                    raise Problem(
                        503,
                        "service_unavailable",
                        "Le service est momentanément indisponible : réessayez dans un instant.",
                    ) from None
        raise AssertionError("unreachable")


def services_of(runtime: Runtime) -> Services:
    """One client set per process (connection pools are reused)."""
    return runtime.held(Services, lambda: Services(runtime))


def intake_of(ctx: ServiceContext) -> "Intake":
    """One intake per process (its hourly key stays in memory)."""
    return ctx.runtime.held(Intake, lambda: Intake(ctx))


# ---- asynchronous intake of spike-prone commands ----

REQUESTS, INTAKE_KEYS = "requests", "intake_keys"


class Intake:
    """Accepts a sign-up or an application at once (202 + request id) and carries it out later.

    The 202 path touches no database: the command, sealed with the intake key of the current hour
    (held in memory), goes straight to its Kafka topic, acknowledged by the broker before the answer;
    the request id is signed, so "pending" needs no record. The gateway.intake consumer group carries
    the command out against the owning service at its pace and records the outcome. Intake keys are
    shredded after `intake_key_retention_hours`: no copy of a password outlives them (ADR 0005).
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx, self.store, self.documents = ctx, ctx.store, ctx.documents
        self.vault = Vault(ctx.documents, collection=INTAKE_KEYS, remember=True)
        assert ctx.settings.jwt_secret, "the gateway needs CIVIQUE_JWT_SECRET"
        self.secret = ctx.settings.jwt_secret

    async def request(
        self,
        command: Callable[[str, Sealed], IntakeCommand],
        data: dict[str, Any],
        actor: Actor | None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """202 once the bus holds the command; 503 when it does not acknowledge it in time.

        A 503'd command may still reach the bus: with an idempotency key, the request id derives from
        it, so the client's retry carries the same id and the command is carried out once.
        """
        request_id = domain.signed_request_id(self.secret, seed=idempotency_key)
        event = command(request_id, await self.vault.seal(f"intake-{now():%Y%m%d%H}", data))
        correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
        envelope = event.envelope(1, actor=actor or ANONYMOUS, correlation_id=correlation_id)
        try:
            async with asyncio.timeout(self.ctx.settings.intake_publish_timeout_s):
                await self.ctx.bus.publish([OutgoingMessage.of(envelope)])
        except (TimeoutError, KafkaError, OSError):
            INTAKE_REFUSED.labels(event.event_type()).inc()
            log.warning("intake_bus_unavailable", event_type=event.event_type())
            raise BUS_UNAVAILABLE from None
        INTAKE_ACCEPTED.labels(event.event_type()).inc()
        return {"request_id": request_id, "status": "pending"}

    async def status(self, request_id: str) -> dict[str, Any]:
        if not domain.issued_request(self.secret, request_id):
            raise Problem(404, "request_not_found", "Cette demande est introuvable.")
        found = await self.documents.get(REQUESTS, request_id)
        return {"request_id": request_id, **(found or {"status": "pending"})}

    async def carry_out(self, event: IntakeCommand, envelope: Envelope) -> None:
        """Idempotent: a redelivery after a crash at any step finishes the request exactly once."""
        outcome = await self._outcome(event.request_id)
        if outcome is None:
            data = await self.vault.open(event.payload) if event.payload else {}
            if data is None:
                outcome = RequestRejected(
                    request_id=event.request_id,
                    status=410,
                    code="request_expired",
                    detail="Cette demande a expiré avant d’être traitée : recommencez-la.",
                )
            elif isinstance(event, SignUpRequested):
                outcome = await self._sign_up(event.request_id, data)
            else:
                assert isinstance(event, ApplicationRequested)
                outcome = await self._apply(event, data)
            try:
                await append_events(self.store, event.request_id, 0, [outcome], causation_id=str(envelope.event_id))
            except ConcurrencyError:  # another member finished it meanwhile: keep its outcome
                outcome = await self._outcome(event.request_id)
                assert outcome is not None
        await self._record(outcome, envelope)

    async def shred_expired_keys(self) -> list[str]:
        retention = timedelta(hours=self.ctx.settings.intake_key_retention_hours)
        return await self.vault.forget_created_before(now() - retention)

    async def _outcome(self, request_id: str) -> RequestCompleted | RequestRejected | None:
        events, _ = await load_stream(self.store, request_id)
        return next((e for e in events if isinstance(e, RequestCompleted | RequestRejected)), None)

    async def _record(self, outcome: RequestCompleted | RequestRejected, command: Envelope) -> None:
        doc: dict[str, Any] = {
            "kind": "sign_up" if command.type == SignUpRequested.event_type() else "application",
            "accepted_at": command.occurred_at.isoformat(),
            "finished_at": now().isoformat(),
        }
        if isinstance(outcome, RequestCompleted):
            doc |= {"status": "done", "resource": outcome.resource}
        else:
            doc |= {
                "status": "rejected",
                "problem": {"status": outcome.status, "code": outcome.code, "detail": outcome.detail},
            }
        await self.documents.put(REQUESTS, outcome.request_id, doc)

    async def _sign_up(self, request_id: str, data: dict[str, Any]) -> Event:
        answer = await services_of(self.ctx.runtime).call(
            "volunteers", "POST", "/volunteers", None, json=data["volunteer"]
        )
        if answer.status_code >= 500:
            raise RuntimeError(f"volunteers answered {answer.status_code}")  # retried, then dead-lettered
        if answer.status_code >= 300:
            return rejection(request_id, answer)
        volunteer = answer.json()
        try:
            account = await Accounts(self.ctx).create(
                data["volunteer"]["email"], data["password"], "volunteer", account_id=volunteer["volunteer_id"]
            )
        except Problem as problem:
            return RequestRejected(
                request_id=request_id, status=problem.status, code=problem.code, detail=problem.detail
            )
        return RequestCompleted(request_id=request_id, resource={**volunteer, "account_id": account["id"]})

    async def _apply(self, event: ApplicationRequested, data: dict[str, Any]) -> Event:
        actor = Actor(id=event.volunteer_id, role="volunteer")
        answer = await services_of(self.ctx.runtime).call(
            "volunteers",
            "POST",
            f"/volunteers/missions/{quote(event.mission_id, safe='')}/applications",
            actor,
            json={"message": data.get("message")} if data.get("message") else {},
        )
        if answer.status_code >= 500:
            raise RuntimeError(f"volunteers answered {answer.status_code}")
        if answer.status_code >= 300:
            return rejection(event.request_id, answer)
        return RequestCompleted(request_id=event.request_id, resource=answer.json())


def rejection(request_id: str, answer: httpx.Response) -> RequestRejected:
    body = answer.json()
    return RequestRejected(
        request_id=request_id,
        status=answer.status_code,
        code=body.get("code", "rejected"),
        detail=body.get("detail", "La demande a été refusée."),
    )
