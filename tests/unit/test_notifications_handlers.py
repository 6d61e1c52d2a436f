"""The notifications handlers on the in-memory stores, as the composition root builds them: preferences,
unsubscribe links, referents' broadcasts and who may read their report, operators' failures, and one
e-mail from its event to the local mailbox. No server, no file: milliseconds each."""

from typing import Any

import pytest

from services.notifications.domain import FREQUENCY_NOT_APPLICABLE, INVALID_LINK, unsubscribe_token
from services.notifications.handlers import DeliveryLog, Letters, Notifications
from services.notifications.handlers.service import BROADCAST_NOT_FOUND, NO_LOCAL_MAILBOX
from shared.access import NOT_YOUR_DEPARTMENT, ROLE_NOT_ALLOWED
from shared.contracts.notifications import Broadcast, FailuresQuery, PreferencesChange, PreferencesView, Unsubscribed
from shared.errors import Refusal
from shared.events import Actor, Event, ReferentAppointed, VolunteerRegistered, catalog
from shared.runtime.batched import BatchedDocuments
from shared.runtime.mail import MailboxMailer
from shared.runtime.memory import InMemoryDocumentStore, InMemoryEventStore
from shared.runtime.settings import MissingSecret, Settings
from shared.runtime.vault import Vault

SECRET = "unit-link-secret"
VOLUNTEER = Actor(id="volunteer-1", role="volunteer")
MANAGER = Actor(id="manager-1", role="manager")
REFERENT = Actor(id="referent-1", role="referent")  # of the Morbihan (56)
ADMIN = Actor(id="admin-1", role="admin")
NEWS = Broadcast(subject="Collecte samedi", body="Une collecte a lieu samedi matin.")


def built(settings: Settings, keys: InMemoryDocumentStore | None = None) -> Notifications:
    """What the service's composition root builds, on the in-memory stores."""
    documents = InMemoryDocumentStore()
    vault = Vault(keys or InMemoryDocumentStore())
    log = DeliveryLog(BatchedDocuments(documents), settings, vault, MailboxMailer(documents), Letters())
    return Notifications(documents, InMemoryEventStore(), settings, log)


@pytest.fixture
def settings() -> Settings:
    return Settings(link_secret=SECRET, smtp_host=None, public_url="https://civique.test")


@pytest.fixture
def notifications(settings: Settings) -> Notifications:
    return built(settings)


class Told:
    """Events as the service's consumers hand them over, each at the next version of its stream."""

    def __init__(self, notifications: Notifications) -> None:
        self.notifications, self.versions = notifications, dict[str, int]()

    async def __call__(self, *events: Event) -> None:
        for event in events:
            self.versions[event.stream_id()] = self.versions.get(event.stream_id(), 0) + 1
            await self.notifications.on_event(event, event.envelope(self.versions[event.stream_id()]))


@pytest.fixture
async def told(notifications: Notifications) -> Told:
    tell = Told(notifications)
    await tell(ReferentAppointed(referent_id=REFERENT.id, departments=["56"]))
    return tell


def refused(refusal: Refusal) -> Any:
    """`with refused(X):` the block raises that refusal: its kind (so its status) and its code."""
    return pytest.raises(type(refusal), match=f"^{refusal.code}$")


async def test_preferences_round_trip(notifications: Notifications):
    assert await notifications.preferences(VOLUNTEER.id) == PreferencesView(frequency="realtime", unsubscribed=[])
    changed = await notifications.change_preferences(VOLUNTEER, PreferencesChange(news=False))
    assert changed == PreferencesView(frequency="realtime", unsubscribed=["news"])
    assert await notifications.preferences(VOLUNTEER.id) == changed
    again = await notifications.change_preferences(VOLUNTEER, PreferencesChange(news=True, activity=False))
    assert again.unsubscribed == ["activity"]
    summary = await notifications.change_preferences(MANAGER, PreferencesChange(frequency="summary"))
    assert summary == PreferencesView(frequency="summary", unsubscribed=[])


async def test_a_volunteer_has_no_daily_summary_to_choose(notifications: Notifications):
    with refused(FREQUENCY_NOT_APPLICABLE):
        await notifications.change_preferences(VOLUNTEER, PreferencesChange(frequency="summary", news=False))
    assert (await notifications.preferences(VOLUNTEER.id)).unsubscribed == []  # nothing half done


async def test_a_forged_unsubscribe_link_is_refused_and_a_signed_one_unsubscribes(notifications: Notifications):
    token = unsubscribe_token(SECRET, VOLUNTEER.id, "news")
    for forged in (token[:-2] + "xx", unsubscribe_token("another secret", VOLUNTEER.id, "news"), None):
        with refused(INVALID_LINK):
            await notifications.unsubscribe(forged)
        with refused(INVALID_LINK):
            notifications.unsubscribe_category(forged)
    assert notifications.unsubscribe_category(token) == "news"
    assert (await notifications.preferences(VOLUNTEER.id)).unsubscribed == []  # asking changes nothing
    assert await notifications.unsubscribe(token) == Unsubscribed(unsubscribed="news")
    assert await notifications.unsubscribe(token) == Unsubscribed(unsubscribed="news")  # twice: the same
    assert (await notifications.preferences(VOLUNTEER.id)).unsubscribed == ["news"]


async def test_a_referent_writes_only_to_their_own_departments(notifications: Notifications, told: Told):
    with refused(NOT_YOUR_DEPARTMENT):
        await notifications.post_broadcast(REFERENT, "35", NEWS)
    with refused(NOT_YOUR_DEPARTMENT):  # appointed nowhere: this service knows them from ReferentAppointed
        await notifications.post_broadcast(Actor(id="referent-2", role="referent"), "56", NEWS)
    with refused(ROLE_NOT_ALLOWED):
        await notifications.post_broadcast(MANAGER, "56", NEWS)
    accepted = await notifications.post_broadcast(REFERENT, "56", NEWS)
    assert accepted.status == "accepted"
    (posted,) = await notifications.store.read(f"broadcast-{accepted.broadcast_id}")
    assert posted.data["department"] == "56" and posted.actor.id == REFERENT.id
    assert (await notifications.post_broadcast(ADMIN, "35", NEWS)).status == "accepted"  # admins, anywhere


async def test_a_broadcast_report_for_its_departments_referents_and_admins(notifications: Notifications, told: Told):
    with refused(BROADCAST_NOT_FOUND):
        await notifications.broadcast_report(REFERENT, "unknown")
    accepted = await notifications.post_broadcast(REFERENT, "56", NEWS)
    (posted,) = await notifications.store.read(f"broadcast-{accepted.broadcast_id}")
    await notifications.fan_out(catalog.decode(posted), posted)
    report = await notifications.broadcast_report(REFERENT, accepted.broadcast_id)
    assert (report.department, report.subject, report.recipients, report.sent) == ("56", NEWS.subject, 0, 0)
    assert await notifications.broadcast_report(ADMIN, accepted.broadcast_id) == report
    await told(ReferentAppointed(referent_id="referent-35", departments=["35"]))
    with refused(NOT_YOUR_DEPARTMENT):
        await notifications.broadcast_report(Actor(id="referent-35", role="referent"), accepted.broadcast_id)
    with refused(ROLE_NOT_ALLOWED):
        await notifications.broadcast_report(MANAGER, accepted.broadcast_id)


async def test_failures_are_for_admins(notifications: Notifications):
    with refused(ROLE_NOT_ALLOWED):
        await notifications.failures(REFERENT, FailuresQuery())
    assert await notifications.failures(ADMIN, FailuresQuery(status="unconfirmed", limit=5)) == []


async def test_a_welcome_email_reaches_the_local_mailbox(settings: Settings):
    keys = InMemoryDocumentStore()
    notifications = built(settings, keys)
    personal = await Vault(keys).seal(VOLUNTEER.id, {"first_name": "Camille", "email": "camille@example.fr"})
    await Told(notifications)(
        VolunteerRegistered(
            volunteer_id=VOLUNTEER.id,
            personal=personal,
            postal_code="56000",
            department="56",
            age_bracket="25-34",
            domains=["food_and_emergency_aid"],
            availability=["weekends"],
            mode="both",
            max_distance_km=20,
            onsite_restricted=False,
            visible_to_organizations=True,
        )
    )
    assert await notifications.log.send_due() == 1
    (letter,) = await notifications.mailbox()
    assert letter["to"].endswith("<camille@example.fr>") and "Bienvenue" in letter["subject"]
    assert (await notifications.mailbox_letter(letter["id"]))["html"]
    with refused(NO_LOCAL_MAILBOX):
        await built(settings.model_copy(update={"smtp_host": "smtp.example.fr"})).mailbox()


def test_the_link_secret_is_required(settings: Settings):
    with pytest.raises(MissingSecret, match="CIVIQUE_LINK_SECRET"):
        built(settings.model_copy(update={"link_secret": None}))
