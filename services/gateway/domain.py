"""Accounts: password policy, lockout, tokens. Pure rules; the handlers do the I/O."""

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from shared.errors import Invalid, LimitReached, Unauthenticated
from shared.events import new_id

MIN_PASSWORD = 10
FREE_FAILURES = 5  # then each failure locks the account for longer: 1, 2, 4 … minutes, at most an hour
MAX_LOCK = timedelta(hours=1)


# the 30,000 passwords attackers try first (zxcvbn's list), with French keyboard and words added
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"]) | {
    "azertyuiop",
    "azerty123",
    "motdepasse",
    "bonjour",
    "soleil",
    "doudou",
    "chouchou",
    "loulou",
    "marseille",
    "jetaime",
}
DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def guessable(password: str, email: str = "") -> bool:
    """Common once its case and the digits or symbols around it are set aside, too repetitive, or the e-mail.

    A set lookup, not a strength estimator: it runs on the 202 path of every sign-up of a spike.
    """
    lowered = password.lower()
    core = DECORATION.sub("", lowered)
    local_part = email.lower().split("@")[0]
    return (
        not core
        or lowered in COMMON_PASSWORDS
        or core in COMMON_PASSWORDS
        or len(set(lowered)) < 5
        or (len(local_part) >= 4 and local_part in lowered)
    )


def check_password(password: str, *, email: str = "") -> None:
    """At least 10 characters, and not among the passwords attackers try first."""
    if len(password) < MIN_PASSWORD:
        raise PASSWORD_TOO_SHORT()
    if guessable(password, email):
        raise PASSWORD_GUESSABLE()


def lock_after(failures: int, now: datetime) -> datetime | None:
    """When an account that failed `failures` times in a row may try again (None: now)."""
    if failures < FREE_FAILURES:
        return None
    return now + min(MAX_LOCK, timedelta(minutes=2 ** (failures - FREE_FAILURES)))


def new_secret() -> str:
    """A random token for refresh tokens and invitations (only its hash is stored)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Scope:
    """What an account acts on: the organisations of a manager, the departments of a referent."""

    organizations: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()


NO_SCOPE = Scope()
INVALID_CREDENTIALS = Unauthenticated("invalid_credentials", "E-mail ou mot de passe incorrect.")
LOCKED = LimitReached("account_locked", "Trop d’essais : réessayez dans quelques minutes.")
PASSWORD_TOO_SHORT = Invalid(
    "weak_password",
    f"Le mot de passe doit compter au moins {MIN_PASSWORD} caractères.",
    fields={"password": "trop court"},
)
PASSWORD_GUESSABLE = Invalid(
    "weak_password",
    "Ce mot de passe est trop courant ou trop facile à deviner.",
    fields={"password": "trop facile à deviner"},
)


def signed_request_id(secret: str, *, seed: str | None = None) -> str:
    """A request id that proves the gateway issued it: "pending" needs no record before the 202.

    New each time, or derived from `seed` (the caller's idempotency key): the same seed, the same id.
    """
    request_id = new_id() if seed is None else _derived_uuid(_mac(secret, f"seed:{seed}"))
    return f"{request_id}.{_signature(secret, request_id)}"


def _derived_uuid(digest: bytes) -> str:
    """A UUIDv8 (RFC 9562's custom version) from a digest: the version and variant bits set by hand."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def issued_request(secret: str, signed: str) -> bool:
    request_id, _, signature = signed.partition(".")
    # bytes: compare_digest refuses str with non-ASCII characters, and an id comes from anyone's URL
    return bool(signature) and hmac.compare_digest(signature.encode(), _signature(secret, request_id).encode())


def _signature(secret: str, request_id: str) -> str:
    return base64.urlsafe_b64encode(_mac(secret, request_id)[:16]).decode().rstrip("=")


def _mac(secret: str, text: str) -> bytes:
    return hmac.new(f"request-id:{secret}".encode(), text.encode(), hashlib.sha256).digest()
