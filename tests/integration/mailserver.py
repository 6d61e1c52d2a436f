"""A real SMTP server for the tests (aiosmtpd, in a thread): it keeps what it received and can be told to
answer a temporary (4xx) or permanent (5xx) failure, or to run a hook when the content arrives."""

import email
import email.policy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.conftest import free_port


@dataclass
class Received:
    to: str
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


@dataclass
class MailServer:
    received: list[Received] = field(default_factory=list)
    # answers to give before accepting, in order: "451 ..." or "550 ..."
    failures: list[str] = field(default_factory=list)
    on_data: Callable[[], None] | None = None  # after the content arrived, before the answer
    on_rcpt: Callable[[], None] | None = None  # before the recipient is accepted
    port: int = 0
    connections: set[tuple[str, int]] = field(default_factory=set)  # the peers e-mails came from
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        if self.on_rcpt:
            self.on_rcpt()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            if self.failures:
                return self.failures.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.connections.add(tuple(session.peer))
            self.received.extend(Received(to, message) for to in envelope.rcpt_tos)  # type: ignore[arg-type]
        if self.on_data:
            self.on_data()
        return "250 Message accepted for delivery"

    def to(self, address: str, subject_part: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.to == address and subject_part in r.subject]


class RunningMailServer:
    def __init__(self) -> None:
        self.server = MailServer(port=free_port())
        self.controller = Controller(self.server, hostname="127.0.0.1", port=self.server.port)

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
