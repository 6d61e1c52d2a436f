"""The service app factory: HTTP (FastAPI) plus the service's relay and consumers, on either backend.

One process can host one service (`python -m services.missions`) or all of them
(`python -m services`, embedded): each service keeps its own storage, all share one bus.
"""

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import fastapi_offline
import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.events import catalog, new_id
from shared.events.schemas import asyncapi
from shared.runtime.actors import internal_caller
from shared.runtime.backend import Storage, open_bus, open_storage
from shared.runtime.batched import BatchedDocuments
from shared.runtime.cli import dead_letters_main, parse, server_command
from shared.runtime.consumers import ConsumerRunner, Subscriber
from shared.runtime.dead_letters import report_pending
from shared.runtime.errors import install_error_handlers, problem_response
from shared.runtime.logging import configure_logging
from shared.runtime.metrics import HTTP_SECONDS, OUTBOX_BACKLOG, READINESS
from shared.runtime.ports import DocumentStore, EventBus, EventStore
from shared.runtime.problems import Problem
from shared.runtime.relay import Relay
from shared.runtime.settings import Settings
from shared.runtime.tasks import Supervised, cancel, start_supervised

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
    components: dict[type, Any] = field(default_factory=dict)

    def provide(self, component: Held) -> Held:
        """Keep the one `component` of its type (a service's handlers), built once at start."""
        self.components[type(component)] = component
        return component

    def component(self, kind: type[Held]) -> Held:
        """The component of `kind` this service provided at start."""
        found: Held = self.components[kind]
        return found

    @property
    def store(self) -> EventStore:
        return self.storage.store

    @property
    def documents(self) -> BatchedDocuments:
        return self.storage.documents

    @property
    def keys(self) -> DocumentStore:
        """The platform's key store, shared by the services that seal or open personal data (ADR 0007)."""
        if self.runtime.keys is None:
            raise RuntimeError("the runtime is not open: no key store yet")
        return self.runtime.keys.documents


@dataclass(frozen=True)
class Service:
    """How a service plugs into the factory: its routes, its consumer groups, its start-up work.

    `routers` are internal: only callers holding the internal token reach them, and they are listed in
    the internal OpenAPI document. `public_routers` face people (the gateway's /api/v1, public pages).
    A service that keeps no data (`keeps_data=False`: the website, a client of the public API) gets no
    storage, relay or consumer group; `install` adds what its pages need to the whole app (static files,
    error pages for browsers).
    """

    name: str
    routers: Sequence[APIRouter] = ()
    public_routers: Sequence[APIRouter] = ()
    subscribers: Callable[[ServiceContext], Sequence[Subscriber]] = lambda ctx: ()
    on_start: Callable[[ServiceContext], Awaitable[None]] | None = None
    on_stop: Callable[[ServiceContext], Awaitable[None]] | None = None  # once its jobs and consumers stopped
    background: Sequence[Callable[[ServiceContext], Coroutine[Any, Any, None]]] = ()
    keeps_data: bool = True
    install: Callable[[FastAPI], None] | None = None


@dataclass
class RunningService:
    context: ServiceContext
    relay: Relay
    runners: list[ConsumerRunner] = field(default_factory=list)
    tasks: list[Supervised] = field(default_factory=list)


class Runtime:
    """Starts and stops the storage, relay and consumers of the services of one process."""

    def __init__(self, settings: Settings, services: Sequence[Service]) -> None:
        self.settings = settings
        self.services = [service for service in services if service.keeps_data]  # the others need no runtime
        self.hosted = [service.name for service in services]
        self.bus = open_bus(settings)
        self.running: dict[str, RunningService] = {}
        self.app: Any = None  # the ASGI app hosting these services, for in-process calls between them
        self._housekeeping: Supervised | None = None
        self._held: dict[type, Any] = {}
        self.keys: Storage | None = None
        self._started_at = time.monotonic()

    async def open(self) -> None:
        """Open every service's storage and run its start-up work, nothing more: what a command-line tool
        needs, which appends its events and leaves (the platform's relay publishes them) and never consumes."""
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
                    max_backoff=self.settings.consumer_outage_backoff_max_s,
                    stuck_after=self.settings.consumer_stuck_after_s,
                )
                for subscriber in (service.subscribers(context) if self.settings.run_consumers else ())
            ]
            self.running[service.name] = RunningService(context, relay, runners)

    async def start(self) -> None:
        """Open, then start every relay, consumer group and background job."""
        await self.open()
        runners = [runner for running in self.running.values() for runner in running.runners]
        await asyncio.gather(*(runner.find_backlog() for runner in runners))  # one round trip, not one a group
        for service in self.services:
            running = self.running[service.name]
            if self.settings.run_relays:
                running.relay.start()
            for runner in running.runners:
                await runner.start(find_backlog=False)
            for job in service.background if self.settings.run_consumers else ():
                running.tasks.append(
                    start_supervised(partial(job, running.context), name=f"{service.name}:{job.__name__}")
                )
        self._housekeeping = start_supervised(self._report_gauges, name="runtime:gauges")
        self._started_at = time.monotonic()
        log.info("started", services=self.hosted, backend=self.settings.backend)

    async def stop(self) -> None:
        """Stop jobs and consumers, let each relay publish what is pending (`shutdown_drain_s`), close;
        logs "stopping", then "stopped" with what the relays drained and what is left for the next start."""
        log.info(
            "stopping",
            services=list(self.running),
            uptime_s=round(time.monotonic() - self._started_at, 1),
        )
        await cancel(self._housekeeping)
        published: dict[str, int] = {}
        outbox_left: dict[str, int | None] = {}
        runners = [runner for running in self.running.values() for runner in running.runners]
        # side by side: each member leaving its group is a round trip to the broker and a rebalance
        await asyncio.gather(*(cancel(task) for running in self.running.values() for task in running.tasks))
        await asyncio.gather(*(runner.stop() for runner in runners))
        lag_left = await self._lag_left(runners)
        for service in self.services:
            if service.on_stop and service.name in self.running:
                await service.on_stop(self.running[service.name].context)
        for name, running in self.running.items():
            drain_s = self.settings.shutdown_drain_s if self.settings.run_relays else 0.0
            published[name] = await running.relay.stop(drain_s=drain_s)
            outbox_left[name] = await self._bounded(running.context.store.backlog())
            await running.context.storage.close()
        if self.keys is not None:
            await self.keys.close()
        await self.bus.close()
        self.running.clear()
        log.info("stopped", published_on_stop=published, outbox_left=outbox_left, consumer_lag_left=lag_left)

    async def _bounded(self, call: Awaitable[int]) -> int | None:
        try:
            async with asyncio.timeout(self.settings.readiness_check_timeout_s):
                return await call
        except Exception:
            return None

    async def _lag_left(self, runners: Sequence[ConsumerRunner]) -> dict[str, int | None]:
        async def total(runner: ConsumerRunner) -> int:
            return sum((await self.bus.lag(runner.group, runner.subscriber.topics)).values())

        found = await asyncio.gather(*(self._bounded(total(runner)) for runner in runners))
        return {runner.group: n for runner, n in zip(runners, found, strict=True)}

    async def close(self) -> None:
        """Close what `open` opened (a tool's runtime, never started)."""
        for running in self.running.values():
            await running.context.storage.close()
        if self.keys is not None:
            await self.keys.close()
        self.running.clear()

    def context(self, service: str) -> ServiceContext:
        return self.running[service].context

    def held(self, kind: type[Held], make: Callable[[], Held]) -> Held:
        """The one object of `kind` of this runtime (made on first use): a process-wide cache or client pool."""
        if kind not in self._held:
            self._held[kind] = make()
        held: Held = self._held[kind]
        return held

    async def check_ready(self) -> dict[str, str]:
        """Ping every store and the bus, each within `readiness_check_timeout_s` ("timeout" otherwise), and
        look at every background task: consumers (running, not stuck), relays, jobs. Names what failed."""
        probes: dict[str, Callable[[], Awaitable[None]]] = {"bus": self.bus.ping}
        for name, running in self.running.items():
            probes[f"{name}.store"] = running.context.store.ping
            probes[f"{name}.documents"] = running.context.documents.ping

        async def probe(ping: Callable[[], Awaitable[None]]) -> str:
            try:
                async with asyncio.timeout(self.settings.readiness_check_timeout_s):
                    await ping()
            except TimeoutError:
                return "timeout"
            except Exception as exc:
                return f"failed: {type(exc).__name__}"
            return "ok"

        results = await asyncio.gather(*(probe(ping) for ping in probes.values()))
        checks = dict(zip(probes, results, strict=True))
        for name, running in self.running.items():
            if self.settings.run_relays:
                checks[f"relay:{name}"] = running.relay.status()
            for runner in running.runners:
                checks[f"consumer:{runner.group}"] = runner.health()
            for task in running.tasks:
                checks[f"task:{task.name}"] = task.status()
        if self._housekeeping is not None:
            checks["task:runtime:gauges"] = self._housekeeping.status()
        return checks

    async def _report_gauges(self) -> None:
        """Every `lag_interval_s`: the outbox backlogs, the committed lag of every group of this process,
        consuming or not (a dead consumer's lag keeps growing on the dashboards), and the dead letters of its
        topics not settled yet."""
        every = self.settings.lag_interval_s
        while True:
            reads: list[Awaitable[None]] = []
            for name, running in list(self.running.items()):
                reads.append(self._read_backlog(name, running.context.store))
                reads.extend(runner.report_lag() for runner in running.runners)
            consumed = sorted(
                {topic for running in self.running.values() for r in running.runners for topic in r.subscriber.topics}
            )
            if consumed:  # the dead letters waiting for an operator, of the topics this process consumes
                reads.append(report_pending(self.bus, consumed))
            await asyncio.gather(*(self._bounded_read(read, max(every, 1.0)) for read in reads))
            await asyncio.sleep(every)

    @staticmethod
    async def _read_backlog(name: str, store: Any) -> None:
        OUTBOX_BACKLOG.labels(name).set(await store.backlog())

    @staticmethod
    async def _bounded_read(read: Awaitable[None], within: float) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(within):
                await read


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """ok, or unavailable with what failed: each store, the bus, every consumer group and relay."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class PublishedEvent(BaseModel):
    type: str
    topic: str
    schema_version: int


class AsyncApiDocument(BaseModel):
    """An AsyncAPI 3 document (https://www.asyncapi.com/docs/reference/specification/v3.0.0)."""

    model_config = ConfigDict(extra="allow")

    asyncapi: str
    info: dict[str, Any]
    channels: dict[str, Any]


def provided(service: str, kind: type[Held]) -> Callable[[Request], Awaitable[Held]]:
    """A FastAPI dependency giving a route the component of `kind` its service built at start."""

    async def dependency(request: Request) -> Held:  # async: FastAPI runs a plain function in a thread
        runtime: Runtime = request.app.state.runtime
        return runtime.context(service).component(kind)

    return dependency


def service_context(service: str) -> Callable[[Request], Awaitable[ServiceContext]]:
    """A FastAPI dependency giving a route the running context of its service."""

    async def dependency(request: Request) -> ServiceContext:
        runtime: Runtime = request.app.state.runtime
        return runtime.context(service)

    return dependency


def create_app(settings: Settings, services: Sequence[Service], *, title: str = "Civique") -> FastAPI:
    """A FastAPI app hosting `services`, with /healthz, /readyz, /metrics and the event catalog."""
    configure_logging(settings.log_level, settings.log_json, repeat_interval_s=settings.log_repeat_interval_s)
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

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None)
    serve_docs_offline(app, title)
    app.state.runtime = runtime
    runtime.app = app
    install_error_handlers(app)
    for service in services:
        for router in service.public_routers:
            app.include_router(router)
        for router in service.routers:
            app.include_router(router, dependencies=[Depends(internal_caller)], include_in_schema=False)
        if service.install:
            service.install(app)
    internal_routes = [route for s in services for router in s.routers for route in router.routes]

    app.add_middleware(DirectRoutes)  # innermost: inside the body limit, the correlation id and the timing
    app.add_middleware(LimitBody, max_bytes=settings.max_body_bytes)
    app.add_middleware(CorrelateAndTime)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", tags=["ops"], response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        checks = await runtime.check_ready()
        for check, status in checks.items():  # for the dashboards and the alerts: which check, in which pod
            READINESS.labels(check).set(status == "ok")
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus' text format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/internal/openapi.json", include_in_schema=False, dependencies=[Depends(internal_caller)])
    async def internal_openapi() -> dict[str, Any]:
        """The services' own routes, for the gateway's maintainers: internal token required."""
        return get_openapi(title=f"{title} — routes internes", version="1", routes=internal_routes)

    @app.get("/api/v1/events", tags=["events"])
    async def event_catalog() -> list[PublishedEvent]:
        """The published events: type, topic and schema version."""
        return [PublishedEvent(type=c.event_type(), topic=c.topic, schema_version=c.schema_version) for c in catalog]

    @app.get("/api/v1/events/asyncapi.json", tags=["events"], response_model=AsyncApiDocument)
    async def event_asyncapi() -> dict[str, object]:
        """The AsyncAPI 3 document of every topic and event: the contract of analytics consumers."""
        return asyncapi(catalog)

    return app


DOC_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI and ReDoc, from a package


def serve_docs_offline(app: FastAPI, title: str) -> None:
    """/docs (Swagger UI) and /redoc from packaged assets: they render on a machine without internet."""
    app.mount("/docs/assets", StaticFiles(directory=DOC_ASSETS), name="doc_assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} — API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{title} — API",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )


class LimitBody:
    """Refuses a request body over `max_bytes` with a 413 in the problem format, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await PAYLOAD_TOO_LARGE(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise Problem(413, "payload_too_large", "La requête est trop volumineuse.")
            return message

        await self.app(scope, counted, send)


PAYLOAD_TOO_LARGE = problem_response(413, "payload_too_large", "La requête est trop volumineuse.")


class DirectRoutes:
    """Sends a request straight to its route, past FastAPI's routing, when the route serves requests itself.

    A route with a `direct(scope, receive, send, regular)` method (the gateway's sign-up, ADR 0010) is
    learnt from the first request FastAPI routed to it, by method and path (static paths only); later
    ones go to `direct`, which answers them or hands them to `regular`, the rest of the app. Routing,
    exception middleware and request handling cost a sign-up of a spike more than its own work. What
    `direct` raises is answered by the app's own exception handlers, as ExceptionMiddleware would.
    """

    LEARNT_AT_MOST = 16

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.learnt: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.learnt.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            self._learn(scope)
            return
        scope["route"] = route  # as routing would set it: the timing names it
        regular_called = False

        async def regular(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal regular_called
            regular_called = True
            await self.app(scope, receive, send)

        try:
            await route.direct(scope, receive, send, regular)
        except Exception as exc:
            handler = None if regular_called else exception_handler(scope["app"], exc)
            if handler is None:
                raise  # the regular path's own, or a bug: ServerErrorMiddleware answers 500
            await (await handler(Request(scope, receive), exc))(scope, receive, send)

    def _learn(self, scope: Scope) -> None:
        route = scope.get("route")
        if (
            scope["type"] == "http"
            and callable(getattr(route, "direct", None))
            and scope["method"] in (getattr(route, "methods", None) or ())  # not a 405 it answered
            and not getattr(route, "param_convertors", True)
            and len(self.learnt) < self.LEARNT_AT_MOST
        ):
            self.learnt[(scope["method"], scope["path"])] = route


def exception_handler(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's handler of `exc` as ExceptionMiddleware picks it; None for what only ServerErrorMiddleware handles."""
    handlers: dict[Any, Any] = app.exception_handlers
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        found: Callable[[Request, Exception], Awaitable[Response]] = handlers[exc.status_code]
        return found
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            found = handlers[kind]
            return found
    return None


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
                headers = message.get("headers", [])
                if status == 204:  # no content, so no content type (FastAPI's 204 routes still declare JSON)
                    headers = [(name, value) for name, value in headers if name.lower() != b"content-type"]
                message["headers"] = [*headers, (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            HTTP_SECONDS.labels(scope["method"], getattr(route, "path", "unmatched"), str(status)).observe(
                time.perf_counter() - started
            )


def serve(services: Sequence[Service], *, title: str, prog: str, argv: Sequence[str] | None = None) -> None:
    """Run `services` in this process with uvicorn, configured by CIVIQUE_* settings (--help says how)."""
    options = parse(server_command(prog, title, operations=any(service.keeps_data for service in services)), argv)
    if getattr(options, "command", None) == "dead-letters":
        dead_letters_main(options)
    run(services, title=title, host=options.host, port=options.port)


def run(services: Sequence[Service], *, title: str, host: str | None = None, port: int | None = None) -> None:
    """Serve `services` until SIGTERM or Ctrl-C, their consumer groups and jobs in `workers` processes beside
    this one (started here, stopped with it). Client addresses come from the gateway's own reading of
    X-Forwarded-For (CIVIQUE_TRUSTED_PROXIES), never from uvicorn's."""
    settings = with_process_secrets(Settings())
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
    if settings.worker:
        work(settings, services, title=title)
        return
    workers: list[subprocess.Popen[bytes]] = []
    if settings.workers and settings.run_consumers and any(service.keeps_data for service in services):
        workers = start_workers(settings)
        settings = settings.model_copy(update={"run_consumers": False})
    try:
        app = create_app(settings, services, title=title)
        print(f"{title} ({settings.backend}) on http://{settings.host}:{settings.port}", flush=True)
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False, proxy_headers=False)
    finally:
        stop_workers(workers)


def start_workers(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """The worker processes of `run`: the same command, told to consume rather than serve, with this
    process's secrets (sessions and links signed by either are valid in both)."""
    main = sys.modules["__main__"]
    module = main.__spec__.name if main.__spec__ is not None else None
    command = [sys.executable, "-m", module] if module else [sys.executable, *sys.argv[:1]]
    secrets_env = {
        f"CIVIQUE_{name.upper()}": value
        for name in ("jwt_secret", "internal_token", "link_secret")
        if (value := getattr(settings, name)) is not None
    }
    env = {
        **os.environ,
        **secrets_env,
        "CIVIQUE_WORKER": "true",
        "CIVIQUE_RUN_RELAYS": "false",
        WORKER_PARENT: str(os.getpid()),
    }
    return [subprocess.Popen(command, env=env) for _ in range(settings.workers)]


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], within_s: float = 30.0) -> None:
    """SIGTERM each worker (each stops its consumers cleanly), then wait; kill what is still there."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + within_s
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()


def work(settings: Settings, services: Sequence[Service], *, title: str) -> None:
    """A worker process: the services' consumer groups and jobs, no HTTP listener and no relay (the serving
    process relays), at a lower CPU priority; ends on SIGTERM, Ctrl-C, or when its parent is gone."""
    parent = int(os.environ.get(WORKER_PARENT, os.getppid()))
    end_with_parent()
    if os.getppid() != parent:  # gone before the line above took effect
        return
    os.nice(settings.worker_nice)
    app = create_app(settings.model_copy(update={"run_relays": False}), services, title=title)

    async def consume() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with app.router.lifespan_context(app):
            while not stop.is_set() and os.getppid() == parent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()

    asyncio.run(consume())


WORKER_PARENT = "CIVIQUE_WORKER_PARENT_PID"


def end_with_parent() -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (Linux), even killed: a serving
    process stopped by a signal never gets to stop its workers itself."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


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
