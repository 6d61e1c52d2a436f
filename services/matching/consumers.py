"""The consumer group of the matching service: its read models, which the in-memory index follows."""

from functools import partial

from services.matching import projections
from shared.events import OrganizationRegistered, ReferentAppointed, ReferentRevoked
from shared.runtime.app import ServiceContext
from shared.runtime.consumers import Subscriber


def subscribers(ctx: ServiceContext) -> list[Subscriber]:
    documents = ctx.documents
    return [
        Subscriber(
            "matching.read_models",
            {
                **dict.fromkeys(projections.MISSION_EVENTS, partial(projections.on_mission_event, documents)),
                **dict.fromkeys(projections.VOLUNTEER_EVENTS, partial(projections.on_volunteer_event, documents)),
                **dict.fromkeys(projections.APPLICATION_STATUS, partial(projections.on_application_event, documents)),
                OrganizationRegistered: partial(projections.on_organization_registered, documents),
                ReferentAppointed: partial(projections.on_referent_event, documents),
                ReferentRevoked: partial(projections.on_referent_event, documents),
            },
        )
    ]
