"""Asynchronous intake of spike-prone commands: sign-ups and applications, accepted with a 202."""

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from services.gateway import domain
from services.gateway.handlers.accounts import Accounts, now
from services.gateway.handlers.clients import ServiceUnavailable, services_of
from shared.errors import NotFound, Refusal
from shared.events import (
    Actor,
    ApplicationRequested,
    Envelope,
    IntakeCommand,
    RequestCompleted,
    RequestRejected,
    SignUpRequested,
)
from shared.events.vocabulary import Sealed
from shared.runtime.app import ServiceContext
from shared.runtime.errors import status_of
from shared.runtime.ports import ConcurrencyError, OutgoingMessage
from shared.runtime.problems import Problem
from shared.runtime.streams import append_events, load_stream
from shared.runtime.vault import Vault

ANONYMOUS = Actor(id="anonymous", role="system")
BUS_UNAVAILABLE = Problem(
    503,
    "intake_unavailable",
    "Votre demande n’a pas pu être enregistrée : réessayez dans quelques secondes. Avec le même en-tête "
    "Idempotency-Key, un nouvel essai ne crée pas de doublon.",
    headers={"Retry-After": "5"},
)
REQUEST_NOT_FOUND = NotFound("request_not_found", "Cette demande est introuvable.")
INTAKE_ACCEPTED = Counter(
    "civique_intake_accepted", "Commands accepted with a 202, by type (per process: read it with rate())", ["type"]
)
INTAKE_REFUSED = Counter(
    "civique_intake_unavailable", "Commands answered 503 because the bus did not acknowledge them in time", ["type"]
)
log = structlog.get_logger("civique.gateway")

REQUESTS, INTAKE_KEYS = "requests", "intake_keys"


class Intake:
    """Accepts a sign-up or an application at once (202 + request id) and carries it out later.

    The 202 path touches no database: the command, sealed with the intake key of the current hour
    (held in memory), goes straight to its Kafka topic, acknowledged by the broker before the answer;
    the request id is signed, so "pending" needs no record. The gateway.intake consumer group carries
    the command out against the owning service at its pace and records the outcome. Intake keys are
    shredded after `intake_key_retention_hours`: no copy of a password outlives them (ADR 0005).
    """

    def __init__(self, ctx: ServiceContext, accounts: Accounts) -> None:
        self.ctx, self.store, self.documents, self.accounts = ctx, ctx.store, ctx.documents, accounts
        self.vault = Vault(ctx.documents, collection=INTAKE_KEYS, remember=True)
        self.secret = ctx.settings.secret("jwt_secret")
        self._hour, self._hour_key_id = -1, ""
        self._accepted: dict[type[IntakeCommand], Any] = {}

    async def request(
        self,
        command: Callable[[str, Sealed], IntakeCommand],
        data: dict[str, Any] | str,
        actor: Actor | None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """202 once the bus holds the command; 503 when it does not acknowledge it in time.

        `data` is sealed as it is: JSON values, or a JSON object already serialised (a validated body's
        `model_dump_json()`, which spares a sign-up a second serialisation). A 503'd command may still
        reach the bus: with an idempotency key, the request id derives from it, so the client's retry
        carries the same id and the command is carried out once.
        """
        request_id = domain.signed_request_id(self.secret, seed=idempotency_key)
        key_id = self._key_of_the_hour()
        sealed = await (self.vault.seal_json(key_id, data) if isinstance(data, str) else self.vault.seal(key_id, data))
        event = command(request_id, sealed)
        correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
        message = OutgoingMessage.of(event.envelope(1, actor=actor or ANONYMOUS, correlation_id=correlation_id))
        try:
            async with asyncio.timeout(self.ctx.settings.intake_publish_timeout_s):
                await self.ctx.bus.publish([message])
        except (TimeoutError, KafkaError, OSError):
            INTAKE_REFUSED.labels(event.event_type()).inc()
            log.warning("intake_bus_unavailable", event_type=event.event_type())
            raise BUS_UNAVAILABLE() from None
        accepted = self._accepted.get(type(event))
        if accepted is None:  # the labelled child, looked up once per type: labels() takes a lock each time
            accepted = self._accepted[type(event)] = INTAKE_ACCEPTED.labels(event.event_type())
        accepted.inc()
        return {"request_id": request_id, "status": "pending"}

    def _key_of_the_hour(self) -> str:
        """The id of the intake key of the current hour (UTC), formatted once an hour."""
        moment = now()
        hour = moment.toordinal() * 24 + moment.hour
        if hour != self._hour:
            self._hour, self._hour_key_id = hour, f"intake-{moment:%Y%m%d%H}"
        return self._hour_key_id

    async def status(self, request_id: str) -> dict[str, Any]:
        if not domain.issued_request(self.secret, request_id):
            raise REQUEST_NOT_FOUND()
        found = await self.documents.get(REQUESTS, request_id)
        return {"request_id": request_id, **(found or {"status": "pending"})}

    async def carry_out(self, event: SignUpRequested | ApplicationRequested, envelope: Envelope) -> None:
        """Idempotent: a redelivery after a crash at any step finishes the request exactly once."""
        outcome = await self._outcome(event.request_id)
        if outcome is None:
            data = await self.vault.open(event.payload) if event.payload else {}
            decided: RequestCompleted | RequestRejected
            if data is None:
                decided = RequestRejected(
                    request_id=event.request_id,
                    status=410,
                    code="request_expired",
                    detail="Cette demande a expiré avant d’être traitée : recommencez-la.",
                )
            elif isinstance(event, SignUpRequested):
                decided = await self._sign_up(event.request_id, data)
            else:
                decided = await self._apply(event, data)
            try:
                await append_events(self.store, event.request_id, 0, [decided], causation_id=str(envelope.event_id))
                outcome = decided
            except ConcurrencyError:  # another member finished it meanwhile: keep its outcome
                outcome = await self._outcome(event.request_id)
                if outcome is None:
                    raise  # StreamBusy: an earlier try died between its two writes; wait until it is cleared
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

    async def _sign_up(self, request_id: str, data: dict[str, Any]) -> RequestCompleted | RequestRejected:
        answer = await services_of(self.ctx.runtime).call(
            "volunteers", "POST", "/volunteers", None, json=data["volunteer"]
        )
        check_reachable(answer)
        if answer.status_code >= 300:
            return rejection(request_id, answer)
        volunteer = answer.json()
        try:
            account = await self.accounts.create(
                data["volunteer"]["email"], data["password"], "volunteer", account_id=volunteer["volunteer_id"]
            )
        except Refusal as refusal:
            return RequestRejected(
                request_id=request_id, status=status_of(refusal), code=refusal.code, detail=refusal.detail
            )
        return RequestCompleted(request_id=request_id, resource={**volunteer, "account_id": account["id"]})

    async def _apply(self, event: ApplicationRequested, data: dict[str, Any]) -> RequestCompleted | RequestRejected:
        actor = Actor(id=event.volunteer_id, role="volunteer")
        answer = await services_of(self.ctx.runtime).call(
            "volunteers",
            "POST",
            f"/volunteers/missions/{quote(event.mission_id, safe='')}/applications",
            actor,
            # names the application (the id without its signature): a request carried out twice applies once
            headers={"x-intake-request": event.request_id.partition(".")[0]},
            json={"message": data.get("message")} if data.get("message") else {},
        )
        check_reachable(answer)
        if answer.status_code >= 300:
            return rejection(event.request_id, answer)
        return RequestCompleted(request_id=event.request_id, resource=answer.json())


def check_reachable(answer: httpx.Response) -> None:
    """An unreachable volunteers service is waited out (the command stays on the bus, never dead-lettered);
    its own failure (a 500) is retried, then dead-lettered."""
    if answer.status_code in (502, 503, 504):
        raise ServiceUnavailable("volunteers")
    if answer.status_code >= 500:
        raise RuntimeError(f"volunteers answered {answer.status_code}")


def rejection(request_id: str, answer: httpx.Response) -> RequestRejected:
    body = answer.json()
    return RequestRejected(
        request_id=request_id,
        status=answer.status_code,
        code=body.get("code", "rejected"),
        detail=body.get("detail", "La demande a été refusée."),
    )
