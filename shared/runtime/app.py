"""The service app factory: HTTP (FastAPI) plus the service's relay and consumers, on either backend.

One process can host one service (`python -m services.missions`) or all of them
(`python -m services`, embedded): each service keeps its own storage, all share one bus.
"""

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.events import catalog, new_id
from shared.events.schemas import asyncapi
from shared.runtime.actors import internal_caller
from shared.runtime.backend import Storage, open_bus, open_storage
from shared.runtime.consumers import ConsumerRunner, Subscriber
from shared.runtime.errors import install_error_handlers
from shared.runtime.logging import configure_logging
from shared.runtime.metrics import HTTP_SECONDS, OUTBOX_BACKLOG
from shared.runtime.ports import EventBus
from shared.runtime.relay import Relay
from shared.runtime.settings import Settings
from shared.runtime.tasks import cancel, start_supervised

log = structlog.get_logger("civique.app")
Held = TypeVar("Held")


@dataclass
class ServiceContext:
    """What a running service's handlers, projections and routes work with."""

    name: str
    settings: Settings
    storage: Storage
    bus: EventBus
    runtime: "Runtime"

    @property
    def store(self):
        return self.storage.store

    @property
    def documents(self):
        return self.storage.documents

    @property
    def keys(self):
        """The platform's key store, shared by the services that seal or open personal data (ADR 0007)."""
        return self.runtime.keys.documents


@dataclass(frozen=True)
class Service:
    """How a service plugs into the factory: its routes, its consumer groups, its start-up work.

    `routers` are internal: only callers holding the internal token reach them, and they are listed in
    the internal OpenAPI document. `public_routers` face people (the gateway's /api/v1, public pages).
    """

    name: str
    routers: Sequence[APIRouter] = ()
    public_routers: Sequence[APIRouter] = ()
    subscribers: Callable[[ServiceContext], Sequence[Subscriber]] = lambda ctx: ()
    on_start: Callable[[ServiceContext], Awaitable[None]] | None = None
    background: Sequence[Callable[[ServiceContext], Coroutine[Any, Any, None]]] = ()


@dataclass
class RunningService:
    context: ServiceContext
    relay: Relay
    runners: list[ConsumerRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Runtime:
    """Starts and stops the storage, relay and consumers of the services of one process."""

    def __init__(self, settings: Settings, services: Sequence[Service]) -> None:
        self.settings = settings
        self.services = services
        self.bus = open_bus(settings)
        self.running: dict[str, RunningService] = {}
        self.app: Any = None  # the ASGI app hosting these services, for in-process calls between them
        self._housekeeping: asyncio.Task[None] | None = None
        self._held: dict[type, Any] = {}
        self.keys: Storage | None = None

    async def start(self) -> None:
        self.keys = open_storage(self.settings, "keys")
        # every service is ready before any consumer runs: a handler may call a service of this process
        for service in self.services:
            context = ServiceContext(
                service.name, self.settings, open_storage(self.settings, service.name), self.bus, self
            )
            if service.on_start:
                await service.on_start(context)
            relay = Relay(service.name, context.store, self.bus, interval=self.settings.relay_interval_s)
            runners = [
                ConsumerRunner(
                    subscriber,
                    self.bus,
                    context.documents,
                    max_attempts=self.settings.consumer_max_attempts,
                    backoff=self.settings.consumer_retry_backoff_s,
                )
                for subscriber in (service.subscribers(context) if self.settings.run_consumers else ())
            ]
            self.running[service.name] = RunningService(context, relay, runners)
        for service in self.services:
            running = self.running[service.name]
            running.relay.start()
            for runner in running.runners:
                await runner.start()
            for job in service.background if self.settings.run_consumers else ():
                running.tasks.append(start_supervised(job(running.context), name=f"{service.name}:{job.__name__}"))
        self._housekeeping = start_supervised(self._report_gauges(), name="runtime:gauges")
        log.info("started", services=[s.name for s in self.services], backend=self.settings.backend)

    async def stop(self) -> None:
        await cancel(self._housekeeping)
        for running in self.running.values():
            for task in running.tasks:
                await cancel(task)
            for runner in running.runners:
                await runner.stop()
            await running.relay.stop()
            await running.context.storage.close()
        if self.keys is not None:
            await self.keys.close()
        await self.bus.close()
        self.running.clear()

    def context(self, service: str) -> ServiceContext:
        return self.running[service].context

    def held(self, kind: type[Held], make: Callable[[], Held]) -> Held:
        """The one object of `kind` of this runtime (made on first use): a process-wide cache or client pool."""
        if kind not in self._held:
            self._held[kind] = make()
        return self._held[kind]

    async def check_ready(self) -> dict[str, str]:
        """Ping every store and the bus; the answer names what failed."""
        checks: dict[str, Awaitable[None]] = {"bus": self.bus.ping()}
        for name, running in self.running.items():
            checks[f"{name}.store"] = running.context.store.ping()
            checks[f"{name}.documents"] = running.context.documents.ping()
        results = await asyncio.gather(*(asyncio.wait_for(c, 5) for c in checks.values()), return_exceptions=True)
        return {
            name: "ok" if r is None else f"failed: {type(r).__name__}" for name, r in zip(checks, results, strict=True)
        }

    async def _report_gauges(self, every: float = 5.0) -> None:
        while True:
            for name, running in list(self.running.items()):
                with contextlib.suppress(Exception):
                    OUTBOX_BACKLOG.labels(name).set(await running.context.store.backlog())
                for runner in running.runners:
                    with contextlib.suppress(Exception):
                        await runner.report_lag()
            await asyncio.sleep(every)


def service_context(service: str) -> Callable[[Request], ServiceContext]:
    """A FastAPI dependency giving a route the running context of its service."""

    def dependency(request: Request) -> ServiceContext:
        return request.app.state.runtime.context(service)

    return dependency


def create_app(settings: Settings, services: Sequence[Service], *, title: str = "Civique") -> FastAPI:
    """A FastAPI app hosting `services`, with /healthz, /readyz, /metrics and the event catalog."""
    configure_logging(settings.log_level, settings.log_json)
    if settings.internal_token is None:  # services hosted together still refuse outside callers
        settings = settings.model_copy(update={"internal_token": secrets.token_urlsafe(32)})
    runtime = Runtime(settings, services)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, lifespan=lifespan, docs_url="/docs")
    app.state.runtime = runtime
    runtime.app = app
    install_error_handlers(app)
    for service in services:
        for router in service.public_routers:
            app.include_router(router)
        for router in service.routers:
            app.include_router(router, dependencies=[Depends(internal_caller)], include_in_schema=False)
    internal_routes = [route for s in services for router in s.routers for route in router.routes]

    app.add_middleware(CorrelateAndTime)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        checks = await runtime.check_ready()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/internal/openapi.json", include_in_schema=False, dependencies=[Depends(internal_caller)])
    async def internal_openapi() -> dict[str, Any]:
        """The services' own routes, for the gateway's maintainers: internal token required."""
        return get_openapi(title=f"{title} — routes internes", version="1", routes=internal_routes)

    @app.get("/api/v1/events", tags=["events"])
    async def event_catalog() -> list[dict[str, object]]:
        """The published events: type, topic and schema version."""
        return [{"type": c.event_type(), "topic": c.topic, "schema_version": c.schema_version} for c in catalog]

    @app.get("/api/v1/events/asyncapi.json", tags=["events"])
    async def event_asyncapi() -> dict[str, object]:
        return asyncapi(catalog)

    return app


class CorrelateAndTime:
    """Binds the request's correlation id to the logs, echoes it, times the request.

    Pure ASGI rather than `@app.middleware("http")`: that one costs a task and a stream per request,
    a fifth of the gateway's work on the 202 path of a sign-up spike.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        correlation_id = sent or new_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            HTTP_SECONDS.labels(scope["method"], getattr(route, "path", "unmatched"), str(status)).observe(
                time.perf_counter() - started
            )


def serve(services: Sequence[Service], *, title: str) -> None:
    """Run `services` in this process with uvicorn, configured by CIVIQUE_* settings."""
    settings = with_process_secrets(Settings())
    app = create_app(settings, services, title=title)
    print(f"{title} ({settings.backend}) on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


def with_process_secrets(settings: Settings) -> Settings:
    """Embedded runs draw the gateway's secrets once and keep them in the data directory (sessions and
    request ids outlive a restart); production must set them (fail fast)."""
    missing = [name for name in ("jwt_secret", "internal_token", "link_secret") if getattr(settings, name) is None]
    if not missing:
        return settings
    if settings.backend != "embedded":
        raise SystemExit(
            f"set CIVIQUE_{'/CIVIQUE_'.join(n.upper() for n in missing)} for the {settings.backend} backend"
        )
    kept = settings.data_dir / "secrets.json"
    stored = json.loads(kept.read_text()) if kept.exists() else {}
    if any(name not in stored for name in missing):
        stored |= {name: secrets.token_urlsafe(32) for name in missing if name not in stored}
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.touch(mode=0o600)
        kept.write_text(json.dumps(stored))
    return settings.model_copy(update={name: stored[name] for name in missing})
