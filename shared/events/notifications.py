"""Events of the notifications service: referents' messages to the volunteers of their department."""

from pydantic import Field

from shared.events.catalog import Event, catalog
from shared.events.vocabulary import Department


@catalog.register
class BroadcastPosted(Event):
    """A referent wrote to every volunteer of the department still without a mission (opt-outs excepted)."""

    topic = "notifications.broadcast"
    broadcast_id: str
    department: Department
    referent_id: str
    subject: str = Field(min_length=3, max_length=150)
    body: str = Field(min_length=10, max_length=5000)

    def stream_id(self) -> str:
        return f"broadcast-{self.broadcast_id}"
