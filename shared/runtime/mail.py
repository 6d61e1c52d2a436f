"""Sending e-mail: SMTP in production, a local mailbox in embedded runs (read at /notifications/mailbox).

Both take a `commit` callback, called once the server accepted the sender and the recipient and
before the content goes: the caller records there that the e-mail is leaving. A crash before it
leaves nothing sent (the server drops an unfinished transaction); a crash after it is the only
window where an e-mail may have left unrecorded, and the caller never repeats it blindly.

SMTP keeps up to `smtp_connections` connections open and reuses them from e-mail to e-mail: a
connection and its greeting cost more than the e-mail itself. E-mails are composed here (`compose_mail`),
their bytes written from pre-encoded parts rather than through the stdlib's email objects.
"""

import asyncio
import binascii
import contextlib
import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Protocol

import aiosmtplib

from shared.runtime.ports import DocumentStore
from shared.runtime.settings import Settings

Commit = Callable[[], Awaitable[bool]]
MAILBOX = "mailbox"


class TemporaryMailFailure(Exception):
    """Worth retrying later: the server is away, busy, or answered 4xx."""


class PermanentMailFailure(Exception):
    """Retrying cannot help: the server refused with 5xx (unknown mailbox, rejected content), or the address
    cannot be written in an e-mail at all."""


class MailMayHaveLeft(Exception):
    """The connection failed while the content was going, before the server's answer: it may have been accepted."""


class UnwritableAddress(PermanentMailFailure):
    """The address cannot stand in a header and in the envelope (nothing was sent)."""


@dataclass(frozen=True)
class ComposedMail:
    """An e-mail ready to leave: its envelope (`sender`, `recipient`), its content as the server receives it
    (`content`: RFC 5322 bytes, CRLF), and what a person reads of it (for the local mailbox)."""

    sender: str
    recipient: str
    message_id: str
    to: str
    subject: str
    text: str
    html: str
    content: bytes


# ---- composition: the message's bytes written from pre-encoded parts (RFC 5322, 2045, 2047, 2046) ----
# the stdlib's email package parses back every header it is given and re-folds it on output: ~3 ms an e-mail

ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+")  # a display name's words written as they are (no "=?")
DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
Q_LITERAL = frozenset(string.ascii_letters + string.digits + "!*+-/")  # safe in any encoded-word (RFC 2047 §5)
ENCODED_WORD = len("=?utf-8?q??=")
MAX_ENCODED_WORD, MAX_ENCODED_LINE, MAX_LINE = 75, 76, 78  # RFC 2047 §2, RFC 5322 §2.1.1


def compose_mail(
    *,
    sender: str,
    recipient: str,
    recipient_name: str | None,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    sent_at: datetime | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> ComposedMail:
    """One e-mail, multipart/alternative (plain text, then HTML), both parts UTF-8 in quoted-printable.

    `sender` is the From header as configured ("Civique <ne-pas-repondre@…>"); `headers` are ASCII headers
    written as they are (List-Unsubscribe: a URL in angle brackets is neither folded nor encoded, RFC 2369).
    UnwritableAddress when the recipient's address cannot be written (SMTPUTF8 is not used).
    """
    from_header, envelope_sender = _from_header(sender)
    address = _ascii_address(recipient)
    name = _one_line(recipient_name or "")
    boundary = "=_" + re.sub(r"[^A-Za-z0-9]", "", message_id)[:60]  # "=_" never occurs in quoted-printable text
    lines = [
        from_header,
        _mailbox_header("To", name, address),
        _header("Subject", _one_line(subject)),
        f"Date: {format_datetime(sent_at or datetime.now(UTC))}",
        f"Message-ID: <{message_id}>",
        *(f"{field}: {_one_line(value)}" for field, value in headers),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        "",
    ]
    content = b"".join(
        [
            "\r\n".join(lines).encode("ascii"),
            *_part(boundary, "plain", text),
            *_part(boundary, "html", html),
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return ComposedMail(
        sender=envelope_sender,
        recipient=address,
        message_id=message_id,
        to=f"{_readable(name)} <{address}>" if name else address,
        subject=subject,
        text=text,
        html=html,
        content=content,
    )


def _readable(name: str) -> str:
    """A display name as a person reads it (the local mailbox), quoted when it holds specials."""
    if all(ATOM.fullmatch(word) or not word.isascii() for word in name.split(" ")):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _part(boundary: str, subtype: str, body: str) -> list[bytes]:
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    # b2a_qp keeps the CRLF it is given (soft breaks too) and wraps at 76 characters
    encoded = binascii.b2a_qp(lines.replace("\n", "\r\n").encode(), istext=True)
    head = (
        f"--{boundary}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return [head.encode("ascii"), encoded, b"\r\n"]  # the CRLF before a boundary belongs to the boundary


@lru_cache(maxsize=8)
def _from_header(configured: str) -> tuple[str, str]:
    """The From header and the envelope's sender, from CIVIQUE_MAIL_FROM (the same for every e-mail)."""
    name, address = parseaddr(configured)
    try:
        address = _ascii_address(address)
    except UnwritableAddress:
        raise ValueError(f"CIVIQUE_MAIL_FROM is no address an e-mail can carry: {configured!r}") from None
    return _mailbox_header("From", _one_line(name), address), address


def check_sender(configured: str) -> None:
    """ValueError unless CIVIQUE_MAIL_FROM can be written in every e-mail: at start, rather than per e-mail."""
    _from_header(configured)


def _ascii_address(address: str) -> str:
    """The address as headers and the envelope carry it: a dot-atom local part, the domain in IDNA (xn--) form."""
    local, at, domain = address.strip().rpartition("@")
    try:
        domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    if not at or len(local) > 64 or not DOT_ATOM.fullmatch(local) or not HOSTNAME.fullmatch(domain):
        raise UnwritableAddress("address cannot be written in an e-mail")
    return f"{local}@{domain}"


def _one_line(value: str) -> str:
    """No control character in a header (a CR or LF would start another header)."""
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())


def _mailbox_header(field: str, name: str, address: str) -> str:
    """`Field: name <address>`, the name's atoms as they are and the rest in encoded-words."""
    if not name:
        return f"{field}: {address}"
    words: list[str] = []
    pending: list[str] = []  # consecutive words to encode together (whitespace between encoded-words is no text)
    for word in [*name.split(" "), ""]:
        if word and not ATOM.fullmatch(word):
            pending.append(word)
            continue
        if pending:
            first = MAX_ENCODED_LINE - len(field) - 2 if not words else MAX_ENCODED_WORD
            words += _encoded_words(" ".join(pending), first=first)
            pending = []
        if word:
            words.append(word)
    encoded = any(w.startswith("=?") for w in words)
    return _folded(field, [*words, f"<{address}>"], MAX_ENCODED_LINE if encoded else MAX_LINE)


def _header(field: str, value: str) -> str:
    """`Field: value`, in encoded-words unless plain ASCII, folded between words."""
    if value.isascii() and "=?" not in value:
        return _folded(field, value.split(" "), MAX_LINE)
    return _folded(field, _encoded_words(value, first=MAX_ENCODED_LINE - len(field) - 2), MAX_ENCODED_LINE)


def _folded(field: str, words: list[str], limit: int) -> str:
    """Words after `Field:`, a line folded (CRLF, space) before a word that would take it past `limit`."""
    lines, line = [], f"{field}: {words[0]}"
    for word in words[1:]:
        if len(line) + 1 + len(word) > limit:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


def _encoded_words(text: str, *, first: int) -> list[str]:
    """RFC 2047 Q encoded-words of UTF-8 text, the first no longer than `first`, the others than 75, none
    splitting a character; the spaces between them are not text (hence "_" for the text's own spaces)."""
    words: list[str] = []
    chunk: list[str] = []
    used, room = 0, max(first, ENCODED_WORD + 12) - ENCODED_WORD
    for char in text:
        if char in Q_LITERAL:
            encoded = char
        elif char == " ":
            encoded = "_"
        else:
            encoded = "".join(f"={byte:02X}" for byte in char.encode())
        if used + len(encoded) > room and chunk:
            words.append("=?utf-8?q?" + "".join(chunk) + "?=")
            chunk, used, room = [], 0, MAX_ENCODED_WORD - ENCODED_WORD
        chunk.append(encoded)
        used += len(encoded)
    words.append("=?utf-8?q?" + "".join(chunk) + "?=")
    return words


class Mailer(Protocol):
    async def send(self, mail: ComposedMail, *, commit: Commit) -> bool:
        """Send `mail` to its single recipient; False when `commit` declined (someone else sends it).
        TemporaryMailFailure, PermanentMailFailure: not sent; MailMayHaveLeft: sent or not, nobody knows."""
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

    async def send(self, mail: ComposedMail, *, commit: Commit) -> bool:
        async with self._slots:
            leaving = False
            reused = bool(self._idle)
            client = self._idle.pop() if reused else await self._connected()
            try:
                try:
                    await client.mail(mail.sender)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    client = await self._connected()  # the server let an idle connection go: nothing was sent
                    await client.mail(mail.sender)
                await client.rcpt(mail.recipient)
                try:
                    claimed = await commit()
                except BaseException:
                    client.close()  # the transaction stays open on this connection: it goes, unsent
                    raise
                if not claimed:
                    await client.rset()
                    self._idle.append(client)
                    return False
                leaving = True
                await client.data(mail.content)
            except aiosmtplib.SMTPResponseException as refused:
                await _reset_or_close(client, self._idle)
                if 400 <= refused.code < 500:
                    raise TemporaryMailFailure(f"SMTP {refused.code}") from None
                raise PermanentMailFailure(f"SMTP {refused.code}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as failed:
                client.close()
                if leaving:  # no answer to the content: retrying could deliver it twice
                    raise MailMayHaveLeft(type(failed).__name__) from None
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

    async def send(self, mail: ComposedMail, *, commit: Commit) -> bool:
        if not await commit():
            return False
        await self.documents.put(
            MAILBOX,
            mail.message_id,
            {
                "id": mail.message_id,
                "to": mail.to,
                "subject": mail.subject,
                "text": mail.text,
                "html": mail.html,
                "sent_at": datetime.now(UTC).isoformat(),
            },
        )
        return True

    async def close(self) -> None:
        return None


def mailer_for(settings: Settings, documents: DocumentStore) -> Mailer:
    """SMTP when a host is set, the local mailbox otherwise."""
    return SmtpMailer(settings) if settings.smtp_host else MailboxMailer(documents)
