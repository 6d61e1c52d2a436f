"""A visitor's session, kept in a cookie: the gateway's tokens once signed in, the form token, notices to show
once, drafts of forms filled in steps. Encrypted and authenticated with a key of the server's: the browser
holds it, cannot read it (the tokens and a draft's password stay unreadable) and cannot change it."""

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, Field, ValidationError

from shared.events import Role
from shared.web.csrf import new_token

COOKIE = "civique_session"
NONCE_BYTES = 12
EARLY_REFRESH_S = 30.0  # an access token this close to its end is renewed before it is used
MAX_COOKIE_BYTES = 4000  # browsers drop a cookie over 4 KiB without a word

NoticeKind = Literal["success", "info", "warning", "error"]


class SignedIn(BaseModel):
    """The gateway's session of the visitor: its tokens and whom they name."""

    access_token: str
    refresh_token: str
    expires_at: float = Field(description="when the access token ends (epoch seconds)")
    account_id: str
    role: Role

    @classmethod
    def of(cls, tokens: dict[str, Any], now: float) -> "SignedIn":
        """From the gateway's answer to a login or a refresh (`Tokens`)."""
        return cls(
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            expires_at=now + float(tokens["expires_in"]),
            account_id=tokens["account_id"],
            role=tokens["role"],
        )

    def expiring(self, now: float) -> bool:
        return now >= self.expires_at - EARLY_REFRESH_S


class Notice(BaseModel):
    """A message for the next page the visitor sees (after a redirect), once."""

    kind: NoticeKind
    text: str


class Session(BaseModel):
    csrf: str = Field(default_factory=new_token)
    signed_in: SignedIn | None = None
    notices: list[Notice] = Field(default_factory=list)
    drafts: dict[str, dict[str, Any]] = Field(default_factory=dict, description="by form: what its steps kept")


class SessionCodec:
    """Session ⇄ cookie value: JSON sealed with AES-GCM, the cookie's name as associated data."""

    def __init__(self, secret: str) -> None:
        # a key of its own, derived from the secret: a leaked cookie key says nothing of the secret's other uses
        self._cipher = AESGCM(hmac.new(secret.encode(), b"civique.web.session", hashlib.sha256).digest())

    def encode(self, session: Session) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher.encrypt(nonce, session.model_dump_json(exclude_defaults=True).encode(), COOKIE.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def decode(self, value: str | None) -> Session | None:
        """The session the cookie holds; None when there is none, or one this server did not seal, or altered."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            opened = self._cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], COOKIE.encode())
            return Session.model_validate(json.loads(opened))
        except (binascii.Error, ValueError, InvalidTag, ValidationError):
            return None


def cookie_attributes(secure: bool, signed_in: bool, lifetime_s: int) -> dict[str, Any]:
    """How the session cookie is set: HttpOnly and SameSite=Lax always, Secure on https; it lasts as long as the
    gateway's refresh token once signed in, and as long as the browser's session before."""
    attributes: dict[str, Any] = {"httponly": True, "samesite": "lax", "secure": secure, "path": "/"}
    if signed_in:
        attributes["max_age"] = lifetime_s
    return attributes


def now() -> float:
    return time.time()
