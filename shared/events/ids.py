"""Identifiers for events and aggregates."""

import os
import time
from uuid import UUID


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7): sorts by creation millisecond, then at random."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return UUID(int=value)


def new_id() -> str:
    """A new aggregate or request identifier, as text."""
    return str(uuid7())
