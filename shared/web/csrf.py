"""Cross-site request forgery: every form carries the session's token, and a POST without it is refused.

The token lives in the session cookie, which only this server can read or write (sealed, HttpOnly,
SameSite=Lax): another site can neither read it nor make the browser send a form that carries it.
"""

import hmac
import secrets

FIELD = "csrf_token"  # the hidden field of every form


def new_token() -> str:
    """A session's token: 192 random bits."""
    return secrets.token_urlsafe(24)


def valid(expected: str, sent: str | None) -> bool:
    """Whether a form sent the session's token (compared in constant time)."""
    # bytes: compare_digest refuses str with non-ASCII characters, and a form field comes from anyone
    return bool(expected) and sent is not None and hmac.compare_digest(expected.encode(), sent.encode())
