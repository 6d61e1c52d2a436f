"""Sending e-mail: SMTP in production, a local mailbox in embedded runs (read at /notifications/mailbox).

Both take a `commit` callback, called once the server accepted the sender and the recipient and
before the content goes: the caller records there that the e-mail is leaving. A crash before it
leaves nothing sent (the server drops an unfinished transaction); a crash after it is the only
window where an e-mail may have left unrecorded, and the caller never repeats it blindly.

SMTP keeps up to `smtp_connections` connections open and reuses them from e-mail to e-mail: a
connection and its greeting cost more than the e-mail itself.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Protocol

import aiosmtplib

from shared.runtime.ports import DocumentStore
from shared.runtime.settings import Settings

Commit = Callable[[], Awaitable[bool]]
MAILBOX = "mailbox"


class TemporaryMailFailure(Exception):
    """Worth retrying later: the server is away, busy, or answered 4xx."""


class PermanentMailFailure(Exception):
    """Retrying cannot help: the server refused with 5xx (unknown mailbox, rejected content)."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage, *, commit: Commit) -> bool:
        """Send `message` to its single recipient; False when `commit` declined (someone else sends it)."""
        ...

    async def close(self) -> None:
        """Let go of what the mailer holds open."""
        ...


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SMTP needs CIVIQUE_SMTP_HOST")
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_connections)

    async def send(self, message: EmailMessage, *, commit: Commit) -> bool:
        async with self._slots:
            reused = bool(self._idle)
            client = self._idle.pop() if reused else await self._connected()
            try:
                try:
                    await client.mail(_address(message["From"]))
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    client = await self._connected()  # the server let an idle connection go: nothing was sent
                    await client.mail(_address(message["From"]))
                await client.rcpt(_address(message["To"]))
                if not await commit():
                    await client.rset()
                    self._idle.append(client)
                    return False
                await client.data(message.as_bytes())
            except aiosmtplib.SMTPResponseException as refused:
                await _reset_or_close(client, self._idle)
                if 400 <= refused.code < 500:
                    raise TemporaryMailFailure(f"SMTP {refused.code}") from None
                raise PermanentMailFailure(f"SMTP {refused.code}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as failed:
                client.close()
                raise TemporaryMailFailure(type(failed).__name__) from None
            self._idle.append(client)
            return True

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()

    async def _connected(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_s,
        )
        try:
            await client.connect()
            if s.smtp_username:
                await client.login(s.smtp_username, s.smtp_password or "")
        except aiosmtplib.SMTPResponseException as refused:
            client.close()
            raise (TemporaryMailFailure if 400 <= refused.code < 500 else PermanentMailFailure)(
                f"SMTP {refused.code}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as failed:
            client.close()
            raise TemporaryMailFailure(type(failed).__name__) from None
        return client


async def _reset_or_close(client: aiosmtplib.SMTP, idle: list[aiosmtplib.SMTP]) -> None:
    """After a refusal the connection is still good once reset; a connection that cannot be reset goes."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
    else:
        idle.append(client)


class MailboxMailer:
    """Embedded runs keep what they would send in a collection a person can read."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    async def send(self, message: EmailMessage, *, commit: Commit) -> bool:
        if not await commit():
            return False
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        message_id = message["Message-ID"].strip("<>")
        await self.documents.put(
            MAILBOX,
            message_id,
            {
                "id": message_id,
                "to": message["To"],
                "subject": message["Subject"],
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else "",
                "sent_at": datetime.now(UTC).isoformat(),
            },
        )
        return True

    async def close(self) -> None:
        return None


def mailer_for(settings: Settings, documents: DocumentStore) -> Mailer:
    """SMTP when a host is set, the local mailbox otherwise."""
    return SmtpMailer(settings) if settings.smtp_host else MailboxMailer(documents)


def _address(header: str) -> str:
    return parseaddr(header)[1]
