"""What the platform writes, and when: the categories of messages, preferences, throttling, reminder periods,
signed unsubscribe links. Pure: no I/O, no clock (callers pass `now`). Which message each event calls for,
and in which category, is the table of rules in `handlers.notices`. Refusals are `shared.errors` ones, each
declared once below."""

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.contracts.notifications import Frequency, Unsubscribable
from shared.errors import Invalid, Refusal
from shared.events import Role

PARIS = ZoneInfo("Europe/Paris")

# transactional: the answer to something the person did or must do, always sent at once;
# activity: what happens on an organisation's or a department's missions, realtime or daily summary;
# news: what the platform proposes to a volunteer, opt-out. Activity and news are throttled.
Category = Literal["transactional", "activity", "news"]


class InvalidLink(Refusal):
    """A link the platform did not sign, or altered on the way: the request itself is bad (400), not its data."""


INVALID_LINK = InvalidLink("invalid_unsubscribe_link", "Ce lien de désinscription n’est pas valide.")
FREQUENCY_NOT_APPLICABLE = Invalid(
    "frequency_not_applicable", "Le résumé quotidien concerne les gestionnaires et les référents."
)
CHOOSE_FREQUENCY: tuple[Role, ...] = ("manager", "referent", "admin")
MAX_TOKEN_LENGTH = 500

ALMOST_FULL_ABOVE = 5  # JeVeuxAider warns of the last place only on missions of more than five
PENDING_REMINDER_AFTER = timedelta(days=7)
ENDED_CHECK_AFTER_DAYS, CLOSING_SOON_AFTER_DAYS = 5, 20  # the missions service closes at one month
MAX_RETRY_DELAY = timedelta(hours=6)

REFUSAL_REASONS = {
    # missions (moderation)
    "outside_priority_domains": "la mission ne relève pas des domaines prioritaires de la crise",
    "unsafe_conditions": "les conditions de sécurité des bénévoles ne sont pas réunies",
    "not_a_volunteer_mission": "il ne s’agit pas d’une mission de bénévolat",
    "duplicate": "elle fait doublon avec une autre",
    # organisations (moderation)
    "not_eligible": "la structure n’est pas éligible",
    "unverifiable_identity": "l’identité de la structure n’a pas pu être vérifiée",
    # applications (organisations)
    "no_response": "sans réponse de votre part",
    "requirements_not_fulfilled": "les prérequis de la mission ne sont pas remplis",
    "change_mind": "l’organisation a changé ses besoins",
    "mission_closed": "la mission est terminée",
    "not_available": "plus disponible",
    # cancellations
    "mission_cancelled": "la mission a été annulée",
    "mission_unpublished": "la mission a été retirée de la publication",
    "other": "autre raison",
}
ORGANIZATION_KINDS = {
    "association": "association",
    "network_antenna": "antenne d’un réseau national",
    "local_authority": "collectivité",
    "public_establishment": "établissement public",
    "other_public_service": "autre service public",
}
IMBALANCE_KINDS = {
    "too_many_volunteers": "beaucoup de bénévoles pour peu de places",
    "missions_without_candidates": "des missions restent sans candidat",
}


def reason_label(reason: str | None) -> str:
    return REFUSAL_REASONS.get(reason or "", reason or "")


def organization_kind_label(kind: str | None) -> str:
    return ORGANIZATION_KINDS.get(kind or "", kind or "")


@dataclass(frozen=True)
class Notice:
    """One e-mail to write: the message, its recipient, and the facts it tells (ids and public facts only)."""

    template: str
    recipient_id: str
    source: str  # the event id, or the period of a reminder: with recipient and template, the e-mail's identity
    facts: dict[str, Any] = field(default_factory=dict)
    category: Category = field(kw_only=True)

    @property
    def key(self) -> str:
        return delivery_key(self.source, self.recipient_id, self.template)


def delivery_key(source: str, recipient_id: str, template: str) -> str:
    """The identity of one e-mail: the same event, recipient and message always give the same key."""
    return hashlib.sha256(f"{source}|{recipient_id}|{template}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Preferences:
    """As in JeVeuxAider: managers and referents choose realtime or a daily summary of the activity."""

    frequency: Frequency = "realtime"
    unsubscribed: frozenset[Unsubscribable] = frozenset()

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> "Preferences":
        if not doc:
            return cls()
        return cls(frequency=doc.get("frequency", "realtime"), unsubscribed=frozenset(doc.get("unsubscribed", ())))

    def doc(self) -> dict[str, Any]:
        return {"frequency": self.frequency, "unsubscribed": sorted(self.unsubscribed)}

    def changed(
        self, role: Role, *, frequency: Frequency | None = None, wanted: dict[Unsubscribable, bool | None] | None = None
    ) -> "Preferences":
        """Another frequency (managers, referents, admins), and which optional e-mails one wants (None: as is)."""
        if frequency is not None and role not in CHOOSE_FREQUENCY:
            raise FREQUENCY_NOT_APPLICABLE()
        unsubscribed = set(self.unsubscribed)
        for category, wants in (wanted or {}).items():
            if wants is not None:
                unsubscribed = unsubscribed - {category} if wants else unsubscribed | {category}
        return Preferences(frequency=frequency or self.frequency, unsubscribed=frozenset(unsubscribed))

    def without(self, category: Unsubscribable) -> "Preferences":
        """Unsubscribed from `category` (an unsubscribe link)."""
        return Preferences(frequency=self.frequency, unsubscribed=self.unsubscribed | {category})


QueuedStatus = Literal["queued", "held", "opted_out"]


def status_on_arrival(category: Category, preferences: Preferences) -> QueuedStatus:
    """Transactional e-mails always go; the others honour opt-outs, and summaries hold activity for the digest."""
    if category == "transactional":
        return "queued"
    if category in preferences.unsubscribed:
        return "opted_out"
    if category == "activity" and preferences.frequency == "summary":
        return "held"
    return "queued"


def over_hourly_limit(category: Category, sent_in_last_hour: int, limit: int) -> bool:
    """Throttling: past `limit` non-transactional e-mails in an hour, the rest wait for the next digest."""
    return category != "transactional" and sent_in_last_hour >= limit


def retry_at(now: datetime, attempts: int, base_s: float) -> datetime:
    """Exponential backoff after a temporary SMTP failure, capped at six hours."""
    return now + min(timedelta(seconds=base_s * 2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY)


def is_almost_full(places: int, free_places: int) -> bool:
    return places > ALMOST_FULL_ABOVE and free_places == 1


def mission_end_reminder(end_date: date | None, today: date) -> str | None:
    """Which reminder a mission still online after its end date calls for: ask, then warn of the closing."""
    if end_date is None:
        return None
    days = (today - end_date).days
    if days >= CLOSING_SOON_AFTER_DAYS:
        return "mission_closing_soon"
    if days >= ENDED_CHECK_AFTER_DAYS:
        return "mission_ended_check"
    return None


def local_day(now: datetime) -> date:
    return now.astimezone(PARIS).date()


def week_period(now: datetime) -> str:
    year, week, _ = local_day(now).isocalendar()
    return f"{year}-W{week:02d}"


def is_weekday(now: datetime) -> bool:
    return local_day(now).weekday() < 5


# ---- unsubscribe links: signed, so that a click needs no login and cannot be forged ----

UNSUBSCRIBABLE: tuple[Unsubscribable, ...] = ("activity", "news")


def unsubscribe_token(secret: str, recipient_id: str, category: Category) -> str:
    payload = base64.urlsafe_b64encode(f"{recipient_id}|{category}".encode()).decode().rstrip("=")
    return f"{payload}.{_signature(secret, payload)}"


def read_unsubscribe_token(secret: str, token: str | None) -> tuple[str, Unsubscribable]:
    """The person and the category a link unsubscribes from; INVALID_LINK unless the platform signed it."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise INVALID_LINK()
    payload, _, signature = token.partition(".")
    if not token.isascii() or not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        raise INVALID_LINK()
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise INVALID_LINK() from None
    recipient_id, _, named = decoded.partition("|")
    for category in UNSUBSCRIBABLE:
        if named == category:
            return recipient_id, category
    raise INVALID_LINK()


def _signature(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"unsubscribe:{payload}".encode(), hashlib.sha256).hexdigest()[:32]
