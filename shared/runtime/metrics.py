"""Prometheus metrics of the runtime, shared by every service of a process."""

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from shared.events import Envelope

EVENTS_APPENDED = Counter("civique_events_appended", "Events appended to an event store", ["service", "type"])
EVENTS_PUBLISHED = Counter("civique_events_published", "Events published by a relay", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "civique_events_consumed",
    "Events delivered to a consumer group, by outcome",
    ["group", "topic", "outcome"],  # handled | duplicate | ignored | retried | dead_lettered | outage_retried
)
DEAD_LETTERS = Counter("civique_dead_letters", "Events sent to a dead-letter topic", ["group", "topic"])
DEAD_LETTERS_PENDING = Gauge(
    "civique_dead_letters_pending",
    "Dead letters of a dead-letter topic not settled yet (neither replayed nor discarded by an operator): the lag "
    "of the group operations.dead_letters. Every process consuming the topic reports it: aggregate with max by (topic)",
    ["topic"],
)
HANDLER_SECONDS = Histogram("civique_handler_seconds", "Time spent handling one event", ["group", "topic"])
CONSUMER_LAG = Gauge(
    "civique_consumer_lag",
    "Records of a partition the consumer group has not committed yet: the high-water mark minus the group's "
    "committed offset (what KEDA's Kafka scaler reads). Every member reports every partition of its group: "
    "aggregate with max by (group, topic, partition)",
    ["group", "topic", "partition"],
)
TASK_RESTARTS = Counter(
    "civique_task_restarts", "Background tasks (consumers, relays, jobs) restarted after a crash", ["task"]
)
READINESS = Gauge(
    "civique_readiness_check",
    "Each check of /readyz as last asked (the probes ask every few seconds): 1 ok, 0 failing (a store, the bus, a "
    "consumer group, a relay, a job)",
    ["check"],
)
OUTBOX_BACKLOG = Gauge("civique_outbox_backlog", "Appended events not yet published", ["service"])
HTTP_SECONDS = Histogram(
    "civique_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def count_appended(service: str, events: Sequence[Envelope]) -> None:
    """Count events an event store has just appended."""
    for event in events:
        EVENTS_APPENDED.labels(service, event.type).inc()
