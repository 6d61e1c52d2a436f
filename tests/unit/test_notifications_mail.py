"""E-mails as the notifications service writes them (`compose_mail`): what a mail client reads back with the
stdlib's own parser, RFC 5322/2045/2047 limits, and addresses that cannot be written."""

import email
import email.policy
from datetime import UTC, datetime

import pytest

from shared.runtime.mail import UnwritableAddress, check_sender, compose_mail

UNSUBSCRIBE = "https://civique.test/api/v1/notifications/unsubscribe?token=dm9sdW50ZWVyLTF8bmV3cw.0123456789abcdef"
SUBJECT = "Votre candidature est acceptée : « Distribution alimentaire pour les familles du quartier de Kercado »"
TEXT = "Bonjour Élodie,\n\nSecours du Morbihan a accepté votre candidature. Merci pour votre engagement !\n" + (
    "Une ligne bien plus longue que soixante-seize caractères, pour que le quoted-printable la coupe. " * 3 + "\n"
)
HTML = '<p>Bonjour Élodie,</p>\n<p><a href="https://civique.test/missions/1?a=1&amp;b=2">Revoir la mission</a></p>\n'


def composed(**overrides):
    fields = {
        "sender": "Civique <ne-pas-repondre@civique.example>",
        "recipient": "elodie@example.fr",
        "recipient_name": "Élodie",
        "subject": SUBJECT,
        "text": TEXT,
        "html": HTML,
        "message_id": "0123456789abcdef@civique",
        "sent_at": datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
        "headers": [("List-Unsubscribe", f"<{UNSUBSCRIBE}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
    }
    return compose_mail(**(fields | overrides))


def parsed(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.default)  # type: ignore[return-value]


def test_a_mail_client_reads_back_what_was_composed():
    mail = composed()
    message = parsed(mail.content)
    assert str(message["Subject"]) == SUBJECT
    assert message["From"].addresses[0].addr_spec == "ne-pas-repondre@civique.example"
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Élodie", "elodie@example.fr")
    assert message["Message-ID"] == "<0123456789abcdef@civique>"
    assert message["Date"].datetime == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert message["MIME-Version"] == "1.0" and message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == HTML
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"  # one line, no encoded-word: RFC 2369 clients
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not message.defects and not any(part.defects for part in message.walk())
    assert (mail.sender, mail.recipient) == ("ne-pas-repondre@civique.example", "elodie@example.fr")
    assert (mail.to, mail.subject, mail.text, mail.html) == ("Élodie <elodie@example.fr>", SUBJECT, TEXT, HTML)


def test_lines_keep_to_the_limits_of_the_rfcs():
    content = composed(recipient_name="Élodie-Anne de La Tour d’Auvergne Le Gall Brière").content
    lines = content.split(b"\r\n")
    assert b"\n" not in content.replace(b"\r\n", b"") and b"\r" not in content.replace(b"\r\n", b"")
    assert content.isascii()  # 7bit on the wire: headers in encoded-words, bodies in quoted-printable
    head = content.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert all(len(line) <= 76 for line in head if b"=?" in line)  # RFC 2047 §2
    assert all(len(line) <= 76 for line in lines[len(head) :])  # quoted-printable
    assert all(len(line) <= 998 for line in lines)  # RFC 5322 §2.1.1


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Camille", "Camille"),
        ("Jean-Pierre O'Neil", "Jean-Pierre O'Neil"),
        ('Zoé "Zo" Le Gall', 'Zoé "Zo" Le Gall'),
        ("Camille\r\nBcc: espion@example.fr", "Camille Bcc: espion@example.fr"),
        ("=?utf-8?q?faux?=", "=?utf-8?q?faux?="),
    ],
)
def test_a_name_is_only_ever_a_name(name, shown):
    message = parsed(composed(recipient_name=name).content)
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == (shown, "elodie@example.fr")
    assert message["Bcc"] is None and len(message.keys()) == 9


def test_a_long_plain_subject_is_folded_between_words():
    subject = "Rappel : " + " ".join(f"mission{n}" for n in range(20))
    content = composed(subject=subject, headers=[]).content
    assert str(parsed(content)["Subject"]) == subject
    head = content.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in head) and any(line.startswith(b" mission") for line in head)


def test_an_international_domain_is_written_in_its_ascii_form():
    mail = composed(recipient="elodie@exämple.fr")
    assert mail.recipient == "elodie@xn--exmple-cua.fr"
    assert parsed(mail.content)["To"].addresses[0].addr_spec == "elodie@xn--exmple-cua.fr"


@pytest.mark.parametrize("address", ["élodie@example.fr", "camille(dupont)@example.fr", "a>b@example.fr", "camille"])
def test_an_address_no_email_can_carry_is_refused_before_anything_is_sent(address):
    with pytest.raises(UnwritableAddress):
        composed(recipient=address)


def test_a_sender_address_no_email_can_carry_is_refused_at_start():
    check_sender("Civique <ne-pas-repondre@civique.example>")
    with pytest.raises(ValueError, match="CIVIQUE_MAIL_FROM"):
        check_sender("Civique <ne pas répondre@civique.example>")
