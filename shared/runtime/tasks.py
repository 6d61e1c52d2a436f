"""Background tasks of the runtime: started supervised, stopped cleanly."""

import asyncio
import contextlib
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


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has finished."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
