"""The public operations of the notifications service, as the gateway relays them: preferences, unsubscribe
links, broadcasts, failures; with the models its routes read and answer."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts import ADMINS, ANY_ROLE, MODERATORS, Input, Operation

Frequency = Literal["realtime", "summary"]
Unsubscribable = Literal["activity", "news"]  # transactional e-mails cannot be refused
FailureStatus = Literal["dead", "unconfirmed"]


# ---- requests ----


class PreferencesChange(Input):
    """What to change; a field left out stays as it is."""

    frequency: Frequency | None = Field(
        default=None, description="activity in real time or in a daily summary: managers, referents and admins only"
    )
    news: bool | None = Field(default=None, description="propositions de missions et messages des référents")
    activity: bool | None = Field(default=None, description="activité des missions (gestionnaires, référents)")


class Broadcast(Input):
    """A referent's message to the volunteers of the department still without a mission."""

    subject: str = Field(min_length=3, max_length=150, examples=["Collecte de la Banque alimentaire"])
    body: str = Field(
        min_length=10,
        max_length=5000,
        description="plain text; a blank line separates paragraphs",
        examples=["Bonjour,\n\nUne grande collecte a lieu samedi matin."],
    )


class UnsubscribeQuery(BaseModel):
    """The signed token of an unsubscribe link. A missing or altered one answers `invalid_unsubscribe_link`."""

    token: str | None = Field(default=None, description="as the e-mail's link carries it")


class FailuresQuery(BaseModel):
    status: FailureStatus = Field(
        default="dead", description="`dead`: given up; `unconfirmed`: possibly sent before a crash"
    )
    limit: int = Field(default=100, ge=1, le=500)


# ---- answers ----


class PreferencesView(BaseModel):
    """One's e-mail preferences: e-mails about one's account and applications always go."""

    frequency: Frequency = Field(description="activity e-mails at once, or gathered in a daily summary")
    unsubscribed: list[Unsubscribable] = Field(description="the optional e-mails one no longer receives")


class Unsubscribed(BaseModel):
    """What the unsubscribe link stopped (JSON for mail clients; a browser that prefers HTML gets a page)."""

    unsubscribed: Unsubscribable


class BroadcastAccepted(BaseModel):
    """Accepted: the e-mails leave in the background; the report counts them."""

    broadcast_id: str
    status: Literal["accepted"]


class BroadcastAudience(BaseModel):
    """Whom a broadcast would reach if posted now (the report counts those of one posted)."""

    department: str
    recipients: int = Field(description="volunteers of the department without an accepted application")


class BroadcastReport(BaseModel):
    """What became of each e-mail of a broadcast."""

    broadcast_id: str
    department: str
    subject: str
    posted_at: datetime
    recipients: int = Field(description="volunteers of the department without a mission when it was posted")
    sent: int
    waiting: int = Field(description="queued, or waiting for a retry")
    in_next_digest: int = Field(description="held by throttling for the daily summary, or already in it")
    opted_out: int = Field(description="recipients who refuse news")
    not_delivered: int = Field(description="given up, recipient erased, or possibly sent before a crash")


class Failure(BaseModel):
    """An e-mail given up or possibly sent before a crash: which message, to whom (an id), why; no address."""

    id: str
    template: str
    recipient_id: str
    source: str = Field(description="the event, or the period of a reminder, it was written for")
    attempts: int
    reason: str | None = None
    created_at: datetime


OPERATIONS = [
    Operation(
        "GET",
        "/notifications/preferences",
        "notifications",
        "/notifications/preferences",
        ANY_ROLE,
        "One's e-mail preferences",
        response=PreferencesView,
    ),
    Operation(
        "PUT",
        "/notifications/preferences",
        "notifications",
        "/notifications/preferences",
        ANY_ROLE,
        "Change one's e-mail preferences",
        response=PreferencesView,
        body=PreferencesChange,
        problems=("frequency_not_applicable",),
    ),
    Operation(
        "GET",
        "/notifications/unsubscribe",
        "notifications",
        "/notifications/unsubscribe",
        None,
        "The page of an unsubscribe link (HTML): asks before acting",
        response=None,
        media_type="text/html",
        query=UnsubscribeQuery,
        problems=("invalid_unsubscribe_link",),
    ),
    Operation(
        "POST",
        "/notifications/unsubscribe",
        "notifications",
        "/notifications/unsubscribe",
        None,
        "Unsubscribe: RFC 8058 one-click (JSON), or the page's button (HTML when preferred)",
        response=Unsubscribed,
        query=UnsubscribeQuery,
        problems=("invalid_unsubscribe_link",),
    ),
    Operation(
        "POST",
        "/departments/{department}/broadcasts",
        "notifications",
        "/notifications/departments/{department}/broadcasts",
        MODERATORS,
        "A referent writes to the department's volunteers without a mission",
        response=BroadcastAccepted,
        body=Broadcast,
        status=202,
        problems=("not_your_department",),
    ),
    Operation(
        "GET",
        "/departments/{department}/broadcast-audience",
        "notifications",
        "/notifications/departments/{department}/broadcast-audience",
        MODERATORS,
        "How many volunteers a broadcast would reach now (its preview)",
        response=BroadcastAudience,
        problems=("not_your_department",),
    ),
    Operation(
        "GET",
        "/broadcasts/{broadcast_id}",
        "notifications",
        "/notifications/broadcasts/{broadcast_id}",
        MODERATORS,
        "What became of a broadcast",
        response=BroadcastReport,
        problems=("broadcast_not_found", "not_your_department"),
    ),
    Operation(
        "GET",
        "/notifications/failures",
        "notifications",
        "/notifications/failures",
        ADMINS,
        "E-mails given up or possibly sent before a crash, for operators",
        response=list[Failure],
        query=FailuresQuery,
    ),
]
