"""Background tasks of the runtime: supervised (restarted with backoff after a crash), stopped cleanly."""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from shared.runtime.metrics import TASK_RESTARTS

log = structlog.get_logger("civique.tasks")

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervised:
    """A background task that a supervisor restarts after each crash, with exponential backoff.

    `factory` makes a fresh coroutine for every run. A crash is logged, counted in
    `civique_task_restarts_total{task}`, and followed by a pause of `backoff_s`, doubled after each
    crash in a row up to `max_backoff_s`; a run that lasted `healthy_after_s` resets the doubling.
    A run that returns ends the task (a job that has nothing more to do is not restarted).
    """

    def __init__(
        self,
        factory: TaskFactory,
        *,
        name: str,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
    ) -> None:
        self.name, self.factory = name, factory
        self.backoff_s, self.max_backoff_s, self.healthy_after_s = backoff_s, max_backoff_s, healthy_after_s
        self.crashes = 0  # in a row: reset by a run that lasted healthy_after_s
        self.restarts = 0
        self.last_error: str | None = None
        self.running = False
        self.task: asyncio.Task[None] = asyncio.create_task(self._supervise(), name=name)

    async def _supervise(self) -> None:
        while True:
            started = time.monotonic()
            self.running = True
            try:
                await self.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started >= self.healthy_after_s:
                    self.crashes = 0
                self.crashes += 1
                self.last_error = type(exc).__name__
                pause = min(self.max_backoff_s, self.backoff_s * 2 ** (self.crashes - 1))
                log.exception("task_crashed", task=self.name, crashes=self.crashes, restart_in_s=round(pause, 3))
            finally:
                self.running = False
            await asyncio.sleep(pause)
            self.restarts += 1
            TASK_RESTARTS.labels(self.name).inc()
            log.info("task_restarted", task=self.name, restarts=self.restarts)

    def status(self) -> str:
        """Either "ok" while a run is going on, or why not (for readiness checks)."""
        if self.task.done():
            return "failed: stopped"
        if not self.running:
            return f"failed: restarting after {self.crashes} crash(es) ({self.last_error})"
        return "ok"


def start_supervised(
    factory: TaskFactory,
    *,
    name: str,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> Supervised:
    """Run `factory()` in the background, restarting it with backoff whenever it crashes."""
    return Supervised(factory, name=name, backoff_s=backoff_s, max_backoff_s=max_backoff_s)


async def cancel(task: "Supervised | asyncio.Task[None] | None", *, grace: float = 10.0) -> None:
    """Cancel a background task and wait until it has finished (a shutdown never hangs on one task)."""
    if isinstance(task, Supervised):
        task = task.task
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        log.error("task_ignored_cancellation", task=task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("task_failed", task=task.get_name(), error_type=type(task.exception()).__name__)


async def finish(task: "Supervised | None", closing: asyncio.Event, *, within: float = 5.0) -> None:
    """Let a loop that watches `closing` end after the work in hand (a consumer's batch: its effects and its
    position written together), waiting at most `within` seconds before cancelling it."""
    closing.set()
    if task is None or task.task.done():
        return
    await asyncio.wait({task.task}, timeout=within)
    await cancel(task)
