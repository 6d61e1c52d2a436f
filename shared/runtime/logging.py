"""JSON logs through structlog, with correlation ids bound per request and per event, and no personal data.

Every line goes through one handler on the root logger, whose `structlog.stdlib.ProcessorFormatter`
renders structlog's events and the standard library's records (aiokafka, pymongo, uvicorn, asyncio…)
alike: one JSON object a line, with a timestamp, the level, the logger's name and the redaction of
personal data. Libraries repeating themselves (aiokafka reconnecting hundreds of times a second during
a broker outage) are rate-limited by `RepeatFilter`.
"""

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset(
    {"email", "first_name", "last_name", "name", "phone", "birth_date", "address", "password", "message", "token"}
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"(?<!\d)(?:\+33\s?|0)[1-9](?:[\s.-]?\d{2}){4}(?!\d)")
REDACTED = "[redacted]"
# libraries that speak at INFO about their routine (connections, rebalances) start at WARNING
CHATTY_LIBRARIES = ("aiokafka", "kafka", "pymongo", "httpx", "httpcore", "asyncio", "urllib3", "multipart")


def redact_personal_data(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop values of personal keys and mask e-mails and phone numbers in text."""
    for key, value in list(event.items()):
        if key in PERSONAL_KEYS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = PHONE.sub(REDACTED, EMAIL.sub(REDACTED, value))
    return event


class RepeatFilter(logging.Filter):
    """Lets the first record of a (logger, level, message template) through, then at most one every
    `interval_s` seconds, which carries `suppressed`: how many were dropped since the last one let through.

    Applies to the standard library's records only (a library's template is stable, its arguments vary);
    structlog's events are the platform's own and pass untouched. Remembers at most `keep` templates.
    """

    def __init__(self, interval_s: float = 10.0, *, keep: int = 1000, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s, self.keep, self.clock = interval_s, keep, clock
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):  # structlog's event dicts
            return True
        key, now = (record.name, record.levelno, record.msg), self.clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            if last is not None and last[1]:
                record.suppressed = last[1]
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.keep:
                self._seen.popitem(last=False)
        return True


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic for typeshed only, not at run time
    """Writes to whatever `sys.stdout` is at the time of each line (test captures replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(level: str = "info", json: bool = True, *, repeat_interval_s: float = 10.0) -> None:
    """Route structlog and every standard-library logger to stdout through one formatter, one JSON object
    a line (or plain console lines with `json=False`); repeated library lines are rate-limited."""
    numeric = logging.getLevelName(level.upper())
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    shared_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_chain, structlog.stdlib.ExtraAdder(allow=("suppressed",))],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_personal_data,
            renderer,
        ],
    )
    handler = StdoutHandler()
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter(repeat_interval_s))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StdoutHandler)]:  # configured again: replace ours
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers would print plain text
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
