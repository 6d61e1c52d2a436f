"""Fault injection for the tests: real outages, not mocks of the behaviour.

- `TcpProxy`: a loopback TCP proxy between a client and a real server (FerretDB, Kafka); `cut()` closes
  every connection and refuses new ones, `restore()` listens again on the same port.
- `SqliteOutage`: wraps a port of the embedded backend (document store, event store); while cut, every
  call waits like SQLite's busy timeout and then fails with `sqlite3.OperationalError: database is locked`.
- `store_outage(settings)`: one or the other, behind the same interface, for tests on both backends.
"""

import asyncio
import contextlib
import inspect
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from shared.runtime.settings import Settings


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; can be cut and restored while clients use it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        for reader, writer in ((client_reader, server_writer), (server_reader, client_writer)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones, as a crashed server or a dropped link does."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


class SqliteOutage:
    """Fault injection on ports of the embedded backend: while cut, each call waits `busy_timeout` seconds
    (or until restored) and then fails the way SQLite does when another writer holds the file."""

    def __init__(self, busy_timeout: float = 0.05) -> None:
        self.busy_timeout = busy_timeout
        self.down = False
        self.refused = 0
        self._restored = asyncio.Event()

    def wrap(self, port: Any) -> Any:
        return _Faulty(port, self)

    async def cut(self) -> None:
        self.down = True
        self._restored.clear()

    async def restore(self) -> None:
        self.down = False
        self._restored.set()

    async def gate(self) -> None:
        if not self.down:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.busy_timeout):
                await self._restored.wait()
        if self.down:
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")


class _Faulty:
    def __init__(self, port: Any, outage: SqliteOutage) -> None:
        self._port, self._outage = port, outage

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._port, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._outage.gate()
            return await attribute(*args, **kwargs)

        return call


class StoreOutage:
    """A store outage on either backend: `settings` to open the storage with, `wrap` for its ports."""

    def __init__(self, settings: Settings, proxy: TcpProxy | None, sqlite: SqliteOutage | None) -> None:
        self.settings, self.proxy, self.sqlite = settings, proxy, sqlite
        self.cut_at: float | None = None

    def wrap(self, port: Any) -> Any:
        return self.sqlite.wrap(port) if self.sqlite is not None else port

    async def cut(self) -> None:
        self.cut_at = time.monotonic()
        await (self.proxy.cut() if self.proxy is not None else self.sqlite.cut())  # type: ignore[union-attr]

    async def restore(self) -> None:
        await (self.proxy.restore() if self.proxy is not None else self.sqlite.restore())  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def store_outage(settings: Settings, *, busy_timeout: float = 0.05) -> AsyncIterator[StoreOutage]:
    """For kafka+mongo, a proxy in front of the MongoDB-protocol server (settings point at it); for the
    embedded backend, SQLite failures injected into the ports the test wraps."""
    if settings.backend == "embedded":
        yield StoreOutage(settings, None, SqliteOutage(busy_timeout))
        return
    url = urlsplit(settings.mongodb_url)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 27017)
    await proxy.start()
    try:
        credentials = url.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
        # operations give up after 1 s of outage (5 s otherwise): the consumer meets it sooner, tests stay short
        query = "&".join(q for q in (url.query, "serverSelectionTimeoutMS=1000") if q)
        proxied = settings.model_copy(update={"mongodb_url": url._replace(netloc=netloc, query=query).geturl()})
        yield StoreOutage(proxied, proxy, None)
    finally:
        await proxy.close()
