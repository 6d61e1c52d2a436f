"""Background tasks of the runtime: started supervised, stopped cleanly."""

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("civique.tasks")


def start_supervised(coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
    """Run `coro` in the background; a crash is logged with the task's name instead of vanishing."""

    async def supervised() -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task_crashed", task=name)

    return asyncio.create_task(supervised(), name=name)


async def cancel(task: asyncio.Task[None] | None, *, grace: float = 10.0) -> None:
    """Cancel a background task and wait until it has finished (a shutdown never hangs on one task)."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        log.error("task_ignored_cancellation", task=task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("task_failed", task=task.get_name(), error_type=type(task.exception()).__name__)
