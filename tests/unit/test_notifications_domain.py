"""Pure rules of the notifications service: categories, preferences, throttling, backoff, reminder periods,
signed unsubscribe links, the table of rules from events to messages and what the service consumes from it,
and every letter rendering in French, as text and as escaped HTML."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.notifications import domain
from services.notifications.consumers import CONSUMED, subscribers
from services.notifications.domain import Notice, Preferences
from services.notifications.handlers import TEMPLATES, Letters
from services.notifications.handlers.notices import MESSAGES, RULES, SCHEDULED, Addressing, notices_for, rule
from services.notifications.projections import PROJECTIONS
from shared.errors import Invalid
from shared.events import BroadcastPosted, VolunteerIdle, VolunteerRegistered, catalog
from shared.runtime.errors import status_of

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def test_every_message_has_its_letter_and_every_letter_its_message():
    letters = {p.stem for p in Path(TEMPLATES).glob("*.jinja")} - {"base"}
    assert letters == set(MESSAGES)


def test_the_key_of_an_email_is_its_event_recipient_and_message():
    def notice(template: str, recipient: str, source: str, facts: dict | None = None) -> Notice:
        return Notice(template, recipient, source, facts or {}, category=MESSAGES[template])

    key = notice("application_received", "manager-1", "event-1").key
    assert key == notice("application_received", "manager-1", "event-1", {"other": "facts"}).key
    assert key != notice("application_received", "manager-2", "event-1").key
    assert key != notice("application_confirmed", "manager-1", "event-1").key
    assert key != notice("application_received", "manager-1", "event-2").key


@pytest.mark.parametrize(
    ("category", "preferences", "status"),
    [
        ("transactional", Preferences(frequency="summary", unsubscribed=frozenset({"activity", "news"})), "queued"),
        ("activity", Preferences(), "queued"),
        ("activity", Preferences(frequency="summary"), "held"),
        ("activity", Preferences(unsubscribed=frozenset({"activity"})), "opted_out"),
        ("news", Preferences(frequency="summary"), "queued"),
        ("news", Preferences(unsubscribed=frozenset({"news"})), "opted_out"),
    ],
)
def test_what_becomes_of_an_email_on_arrival(category, preferences, status):
    assert domain.status_on_arrival(category, preferences) == status


def test_throttling_spares_transactional_emails():
    assert domain.over_hourly_limit("news", 3, 3) and domain.over_hourly_limit("activity", 4, 3)
    assert not domain.over_hourly_limit("news", 2, 3)
    assert not domain.over_hourly_limit("transactional", 100, 3)


def test_retries_back_off_exponentially_up_to_six_hours():
    assert domain.retry_at(NOW, 1, 30) == NOW + timedelta(seconds=30)
    assert domain.retry_at(NOW, 3, 30) == NOW + timedelta(seconds=120)
    assert domain.retry_at(NOW, 30, 30) == NOW + timedelta(hours=6)


def test_the_last_place_is_announced_only_on_missions_of_more_than_five():
    assert domain.is_almost_full(places=8, free_places=1)
    assert not domain.is_almost_full(places=5, free_places=1)
    assert not domain.is_almost_full(places=8, free_places=2)


@pytest.mark.parametrize(
    ("days_after_end", "reminder"),
    [(-1, None), (4, None), (5, "mission_ended_check"), (19, "mission_ended_check"), (20, "mission_closing_soon")],
)
def test_missions_past_their_end_date(days_after_end, reminder):
    today = date(2026, 11, 24)
    assert domain.mission_end_reminder(today - timedelta(days=days_after_end), today) == reminder
    assert domain.mission_end_reminder(None, today) is None


def test_periods_follow_paris_time():
    late_sunday_utc = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # already Monday in Paris
    assert domain.local_day(late_sunday_utc) == date(2026, 11, 30)
    assert domain.week_period(late_sunday_utc) == "2026-W49"
    assert domain.is_weekday(late_sunday_utc)
    assert not domain.is_weekday(datetime(2026, 11, 28, 12, tzinfo=UTC))


def test_unsubscribe_links_are_signed():
    token = domain.unsubscribe_token("secret", "volunteer-1", "news")
    assert domain.read_unsubscribe_token("secret", token) == ("volunteer-1", "news")
    for forged in (
        token[:-1] + ("0" if token[-1] != "0" else "1"),
        domain.unsubscribe_token("another secret", "volunteer-1", "news"),
        domain.unsubscribe_token("secret", "volunteer-1", "transactional"),  # type: ignore[arg-type]
        "garbage",
        "é.é",  # not even ASCII: refused, not a crash
        domain.unsubscribe_token("secret", "volunteer-1", "news").split(".")[0] + "!.0",
        None,  # a link without its token
        "",
        token + "0" * 500,  # longer than any link the platform writes
    ):
        with pytest.raises(domain.InvalidLink) as refused:
            domain.read_unsubscribe_token("secret", forged)
        assert refused.value.code == "invalid_unsubscribe_link"
    assert status_of(domain.INVALID_LINK) == 400  # a bad request, as before refusals left HTTP


def test_preferences_change_by_category_and_the_frequency_is_for_managers_and_referents():
    current = Preferences(unsubscribed=frozenset({"news"}))
    changed = current.changed("volunteer", wanted={"news": True, "activity": False})
    assert changed == Preferences(unsubscribed=frozenset({"activity"}))
    assert current.changed("volunteer", wanted={"news": None}) == current  # left out: as it is
    assert current.changed("referent", frequency="summary").frequency == "summary"
    with pytest.raises(Invalid) as refused:
        current.changed("volunteer", frequency="realtime")
    assert refused.value.code == domain.FREQUENCY_NOT_APPLICABLE.code
    assert current.without("activity").doc() == {"frequency": "realtime", "unsubscribed": ["activity", "news"]}


# ---- the table of rules: events → messages, and what the service consumes ----


def test_the_service_consumes_exactly_what_its_rules_and_projections_read():
    assert set(CONSUMED) == set(RULES) | set(PROJECTIONS)
    assert len(CONSUMED) == len(set(CONSUMED))
    mail, broadcasts = subscribers(None)  # type: ignore[arg-type]  # the context is read only when handling
    assert set(mail.handlers) == set(CONSUMED)
    assert set(broadcasts.handlers) == {BroadcastPosted} and BroadcastPosted not in CONSUMED
    assert all(event_type.event_type() in catalog for event_type in CONSUMED)


def test_every_message_has_one_writer_a_rule_or_the_scheduler():
    told = [template for found in RULES.values() for template in found.messages]
    assert all(found.messages for found in RULES.values())
    assert set(told).isdisjoint(SCHEDULED)
    assert set(told) | set(SCHEDULED) == set(MESSAGES)
    assert set(MESSAGES.values()) <= {"transactional", "activity", "news"}


def test_a_rule_is_declared_once_and_a_message_keeps_its_category():
    async def tell(event, address):
        return []

    with pytest.raises(ValueError, match="has a rule already"):
        rule(VolunteerRegistered, volunteer_welcome="transactional")(tell)
    with pytest.raises(ValueError, match="declared transactional"):
        rule(BroadcastPosted, volunteer_welcome="news")(tell)
    assert BroadcastPosted not in RULES


async def test_a_rule_addresses_its_declared_messages_with_their_category():
    idle = VolunteerIdle(
        volunteer_id="v1", period="2026-11", department="56", days_since_sign_up=20, nearby_mission_ids=["m1"]
    )
    env = idle.envelope(1)
    (notice,) = await notices_for(None, idle, env)  # type: ignore[arg-type]  # this rule reads no read model
    assert notice == Notice("idle_digest", "v1", str(env.event_id), {"mission_ids": ["m1"]}, category="news")
    with pytest.raises(LookupError, match="does not declare"):
        Addressing(None, env, RULES[VolunteerIdle].messages).to("mission_invitation", ["v1"])  # type: ignore[arg-type]


# ---- the letters ----

MISSION = {
    "id": "m1",
    "title": "Distribution <alimentaire>",
    "domain": "food_and_emergency_aid",
    "department": "56",
    "commune": "Vannes",
    "remote": False,
    "end_date": "2026-11-01",
    "organization_id": "o1",
}
CONTEXT = {
    "first_name": "Camille",
    "public_url": "https://civique.test",
    "unsubscribe_url": "https://civique.test/api/v1/notifications/unsubscribe?token=t",
    "mission": MISSION,
    "mission_id": "m1",
    "mission_url": "https://civique.test/missions/m1",
    "organization": {
        "name": "Secours & Co",
        "status": "pending",
        "kind": "association",
        "siret": "12345678900011",
        "department": "56",
        "commune": "Vannes",
    },
    "organization_id": "o1",
    "comment": "Précisez <l’encadrement>.",
    "reason": "unsafe_conditions",
    "departments": ["56"],
    "invitation_url": "https://civique.test/referents/invitation?token=t",
    "reset_url": "https://civique.test/mot-de-passe/nouveau?token=t",
    "contacts": ["gestion@secours56.fr"],
    "missions": [
        {
            "title": "Maraude",
            "commune": "Vannes",
            "url": "https://civique.test/missions/m2",
            "count": 2,
            "department": "56",
            "waiting_days": 3,
        }
    ],
    "organizations": [{"name": "Secours & Co", "department": "56"}],
    "count": 2,
    "department": "56",
    "domain": "food_and_emergency_aid",
    "kind": "too_many_volunteers",
    "summary": "400 bénévoles pour 5 places.",
    "subject": "Collecte samedi",
    "body": "Bonjour,\n\nUne collecte <b>samedi</b>.",
    "items": [{"subject": "Nouvelle candidature", "url": "https://civique.test/missions/m1"}],
}


@pytest.mark.parametrize("template", sorted(MESSAGES))
def test_every_letter_renders_in_french_as_text_and_escaped_html(template):
    subject, text, html = Letters().render(template, CONTEXT)
    assert subject and "\n" not in subject and "{" not in subject
    assert text.startswith("Bonjour Camille,") and "L’équipe Civique" in text
    assert "<" not in text.replace("<alimentaire>", "").replace("<l’encadrement>", "").replace("<b>samedi</b>", "")
    assert html.startswith("<!doctype html>") and '<html lang="fr">' in html
    assert "<alimentaire>" not in html and "<l’encadrement>" not in html and "<b>samedi</b>" not in html
    assert "https://civique.test/" in text and 'href="https://civique.test/' in html
