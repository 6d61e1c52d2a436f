"""JSON logs through structlog, with correlation ids bound per request and per event, and no personal data."""

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset(
    {"email", "first_name", "last_name", "name", "phone", "birth_date", "address", "password", "message", "token"}
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"(?<!\d)(?:\+33\s?|0)[1-9](?:[\s.-]?\d{2}){4}(?!\d)")
REDACTED = "[redacted]"


def redact_personal_data(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop values of personal keys and mask e-mails and phone numbers in text."""
    for key, value in list(event.items()):
        if key in PERSONAL_KEYS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = PHONE.sub(REDACTED, EMAIL.sub(REDACTED, value))
    return event


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Route structlog (and the standard library's loggers) to stdout, one JSON object a line."""
    numeric = logging.getLevelName(level.upper())
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stdout, format="%(name)s %(message)s")
