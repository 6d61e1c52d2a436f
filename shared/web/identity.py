"""Whom an access token names. The gateway issues the tokens (HS256, signed with CIVIQUE_JWT_SECRET) and checks
them on every API call; a service that serves pages of its own (the moderation service: the referents' space)
checks the session's token the same way, with the same rules, without importing the gateway."""

from typing import Any

import jwt

from shared.events import Actor

ALGORITHM = "HS256"


class TokenExpired(Exception):
    """The token was genuine but has ended: renew it with the refresh token."""


class TokenInvalid(Exception):
    """Not a token of ours: forged, altered, or malformed."""


def actor_of(token: str, secret: str) -> Actor:
    """The acting user an access token names, once its signature, its end and its claims are checked."""
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.InvalidTokenError:
        raise TokenInvalid() from None
    try:
        return Actor(id=claims["sub"], role=claims["role"])
    except (KeyError, ValueError):  # signed by us, yet without a known role: not a token to trust
        raise TokenInvalid() from None
