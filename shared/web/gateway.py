"""The public API (/api/v1) as the pages call it: in process when this process hosts the gateway, over HTTP
to `gateway_url` otherwise. Either way the gateway sees each visitor, not the site: in process the visitor's
own address is the caller's, over HTTP it is added to X-Forwarded-For (list the site's address in the
gateway's CIVIQUE_TRUSTED_PROXIES)."""

import asyncio
import hashlib
import time
from contextvars import ContextVar
from typing import Any

import httpx
import structlog

from shared.runtime.app import Runtime

API = "/api/v1"
VISITOR: ContextVar[tuple[str, int]] = ContextVar("visitor", default=("127.0.0.1", 0))
ROTATED_KEPT_S = 30.0  # a refresh token just rotated still gives the same new tokens (concurrent requests)
log = structlog.get_logger("civique.web")


class Refused(Exception):
    """The public API refused (a 4xx): its status, stable code, French detail and field errors (ADR 0008)."""

    def __init__(self, status: int, code: str, detail: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.fields = status, code, detail, fields or {}


class Unavailable(Exception):
    """The gateway failed (a 5xx) or did not answer: not the visitor's mistake, the page says so with its status."""

    def __init__(
        self,
        status: int = 503,
        code: str = "gateway_unreachable",
        detail: str = "Le service est momentanément indisponible : réessayez dans un instant.",
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail = status, code, detail


def expect(answer: httpx.Response, *statuses: int) -> httpx.Response:
    """The answer when its status is one of `statuses` (200 by default); otherwise Refused for a 4xx, Unavailable for
    a 5xx, which no page handles (the site's error page does)."""
    if answer.status_code in (statuses or (200,)):
        return answer
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    problem = (
        str(body.get("code", "http_error")),
        str(body.get("detail", "La demande n’a pas abouti : réessayez dans un instant.")),
    )
    if answer.status_code >= 500:
        raise Unavailable(answer.status_code, *problem)
    raise Refused(answer.status_code, *problem, {str(k): str(v) for k, v in (body.get("fields") or {}).items()})


class InProcess(httpx.ASGITransport):
    """The app called in process, with the visitor of the current request as the caller (VISITOR), so that
    the gateway's rate limits count each visitor, and read X-Forwarded-For as if the visitor had called it."""

    @property  # ASGITransport reads its `client` attribute for every request
    def client(self) -> tuple[str, int]:
        return VISITOR.get()

    @client.setter
    def client(self, _: tuple[str, int]) -> None:  # ASGITransport.__init__ sets the fixed one: ignored
        pass


class Gateway:
    """One client per process (its connection pool is reused), made on first use by `gateway_of`."""

    def __init__(self, runtime: Runtime) -> None:
        self.in_process = "gateway" in runtime.running
        transport = InProcess(app=runtime.app, raise_app_exceptions=False) if self.in_process else None
        self.client = httpx.AsyncClient(
            transport=transport,
            base_url="http://in-process" if self.in_process else runtime.settings.gateway_url.rstrip("/"),
            timeout=httpx.Timeout(10, connect=2),
        )
        self._refreshing: dict[str, asyncio.Future[httpx.Response]] = {}
        self._rotated: dict[str, tuple[float, httpx.Response]] = {}

    async def call(
        self,
        method: str,
        path: str,
        *,
        visitor: tuple[str, int],
        forwarded_for: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """`method` on /api/v1`path` for `visitor` (their address and port), with their access `token`."""
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["authorization"] = f"Bearer {token}"
        hops = forwarded_for if self.in_process else ", ".join(filter(None, (forwarded_for, visitor[0])))
        if hops:
            headers["x-forwarded-for"] = hops
        attempts = 2 if method in ("GET", "PUT", "DELETE") else 1  # only idempotent calls are tried again
        reset = VISITOR.set(visitor)
        try:
            for attempt in range(1, attempts + 1):
                try:
                    return await self.client.request(method, API + path, headers=headers, **kwargs)
                except httpx.TransportError as exc:
                    log.warning("gateway_unreachable", path=path, error_type=type(exc).__name__)
                    if attempt == attempts:
                        raise Unavailable() from None
        finally:
            VISITOR.reset(reset)
        raise AssertionError("unreachable")

    async def refresh(
        self, refresh_token: str, *, visitor: tuple[str, int], forwarded_for: str | None
    ) -> httpx.Response:
        """The gateway's answer to a refresh. Refresh tokens are used up (rotation): requests of one visitor that
        refresh at once (a page and its htmx polling) share the first one's answer instead of being logged out."""
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        moment = time.monotonic()
        self._rotated = {k: kept for k, kept in self._rotated.items() if kept[0] > moment - ROTATED_KEPT_S}
        if key in self._rotated:
            return self._rotated[key][1]
        flight = self._refreshing.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = self._refreshing[key] = asyncio.get_running_loop().create_future()
        try:
            answer = await self.call(
                "POST",
                "/auth/refresh",
                visitor=visitor,
                forwarded_for=forwarded_for,
                json={"refresh_token": refresh_token},
            )
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._refreshing[key]
        flight.set_result(answer)
        if answer.status_code == 200:
            self._rotated[key] = (moment, answer)
        return answer

    async def close(self) -> None:
        await self.client.aclose()


def gateway_of(runtime: Runtime) -> Gateway:
    """The process's client of the public API."""
    return runtime.held(Gateway, lambda: Gateway(runtime))
