"""Topics as code: every topic of the bus, with its partitions, retention, cleanup policy and dead letters.

The one declaration everything comes from: the Kafka bus creates a missing topic with its configuration,
`python -m shared.runtime.topics create` creates or aligns them all (the compose one-shot), and the Strimzi
`KafkaTopic`s of the prod overlay are generated from it (`write`; `check`, run by the tests, fails when the
committed file differs). A topic is an event type's (`Event.topic`, the catalog knows them all) or the
dead-letter topic of one of those (`dead_letter_topic`), with as many partitions: a dead letter keeps its key,
so it lands on the partition number its event had.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.events import catalog
from shared.runtime.cli import CommandLine, parse
from shared.runtime.consumers import dead_letter_topic
from shared.runtime.settings import Settings

FOREVER = -1
ROOT = Path(__file__).resolve().parents[2]
STRIMZI_TOPICS = ROOT / "deploy" / "k8s" / "overlays" / "prod" / "kafka" / "topics.yaml"
STRIMZI_CLUSTER = "civique"  # the Strimzi `Kafka` resource of the prod overlay
PROD_REPLICAS, PROD_MIN_IN_SYNC = 3, 2  # three brokers: one can be down, or rolled, and writes still go on
DEFAULT_PARTITIONS = Settings.model_fields["partitions"].default


@dataclass(frozen=True)
class Topic:
    """A topic of the bus as Kafka must hold it."""

    name: str
    partitions: int
    # kept forever: read models are rebuilt from the history (ADR 0011), dead letters wait for an operator
    retention_ms: int = FOREVER
    # never compacted: every event counts, not only the last of each key
    cleanup_policy: Literal["delete"] = "delete"
    dead_letters_of: str | None = None  # the topic whose dead letters this one holds

    def config(self) -> dict[str, str]:
        """The topic's configuration as Kafka names it."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def declared(partitions: int = DEFAULT_PARTITIONS) -> list[Topic]:
    """Every topic of the platform, each followed by its dead-letter topic; one partition count for all,
    so partition p of every topic holds the same keys (ADR 0002)."""
    topics = []
    for name in catalog.topics():
        topics.append(Topic(name, partitions))
        topics.append(Topic(dead_letter_topic(name), partitions, dead_letters_of=name))
    return topics


def topic_config(name: str) -> dict[str, str]:
    """The configuration the bus creates `name` with (a name outside the declaration, a test's, gets the same)."""
    found = next((topic for topic in declared() if topic.name == name), None)
    return (found or Topic(name, DEFAULT_PARTITIONS)).config()


def dead_letter_topics(topics: Sequence[str] | None = None) -> dict[str, str]:
    """Dead-letter topic → the topic its letters go back to, for `topics` (every declared one by default)."""
    return {
        topic.name: topic.dead_letters_of
        for topic in declared()
        if topic.dead_letters_of is not None and (topics is None or topic.dead_letters_of in topics)
    }


def strimzi_topics(topics: Sequence[Topic]) -> str:
    """The Strimzi `KafkaTopic`s of `topics`, as YAML (Kubernetes names take no underscore: `spec.topicName`
    holds the real one)."""
    documents = []
    for topic in topics:
        config = {**topic.config(), "min.insync.replicas": str(PROD_MIN_IN_SYNC)}
        lines = [
            "apiVersion: kafka.strimzi.io/v1beta2",
            "kind: KafkaTopic",
            "metadata:",
            f"  name: {topic.name.replace('_', '-')}",
            "  labels:",
            f"    strimzi.io/cluster: {STRIMZI_CLUSTER}",
            "spec:",
            f"  topicName: {topic.name}",
            f"  partitions: {topic.partitions}",
            f"  replicas: {PROD_REPLICAS}",
            "  config:",
            *(f'    {key}: "{value}"' for key, value in config.items()),
        ]
        documents.append("\n".join(lines) + "\n")
    header = "# Generated from shared/runtime/topics.py by `python -m shared.runtime.topics write`: do not edit.\n"
    return header + "---\n".join(documents)


async def create(settings: Settings, replicas: int) -> list[str]:
    """Create the declared topics that are missing (with the settings' namespace and partitions) and align
    the configuration of those that exist (Kafka's AlterConfigs: what the declaration does not name goes back
    to the broker's default); returns the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    topics = declared(settings.partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="civique-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        named = {f"{settings.namespace}{topic.name}": topic for topic in topics}
        missing = [name for name in named if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(name, named[name].partitions, replicas, topic_configs=named[name].config())
                    for name in missing
                ]
            )
        present = [name for name in named if name in existing]
        if present:  # created before this declaration (the seven days' retention of Kafka's default)
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=named[name].config()) for name in present]
            )
        return missing
    finally:
        await admin.close()


def command() -> CommandLine:
    parser = CommandLine(
        "python -m shared.runtime.topics",
        description="Les topics du bus, déclarés dans shared/runtime/topics.py : les créer, ou générer les KafkaTopic.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMANDE", title="commandes", required=True)
    created = commands.add_parser(
        "create",
        help="crée les topics manquants sur Kafka et aligne la configuration des autres",
        description="Crée les topics manquants (CIVIQUE_KAFKA_BOOTSTRAP_SERVERS, CIVIQUE_NAMESPACE, "
        "CIVIQUE_PARTITIONS) et aligne la rétention et la politique de nettoyage de ceux qui existent.",
    )
    created.add_argument("--replicas", type=int, default=1, help="facteur de réplication des topics créés (1)")
    commands.add_parser("write", help=f"écrit les KafkaTopic de Strimzi dans {STRIMZI_TOPICS.relative_to(ROOT)}")
    commands.add_parser("check", help="échoue si le fichier des KafkaTopic diffère de la déclaration")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: `create`, `write` or `check`; exit code 1 when `check` finds a difference."""
    options: argparse.Namespace = parse(command(), argv)
    if options.command == "create":
        created = asyncio.run(create(Settings(), options.replicas))
        print(f"{len(declared())} topics déclarés, {len(created)} créés : {', '.join(created) or 'aucun'}")
        return 0
    wanted = strimzi_topics(declared())
    if options.command == "write":
        STRIMZI_TOPICS.parent.mkdir(parents=True, exist_ok=True)
        STRIMZI_TOPICS.write_text(wanted)
        print(f"{len(declared())} topics écrits dans {STRIMZI_TOPICS.relative_to(ROOT)}")
        return 0
    if not STRIMZI_TOPICS.exists() or STRIMZI_TOPICS.read_text() != wanted:
        print(
            f"{STRIMZI_TOPICS.relative_to(ROOT)} diffère de la déclaration : python -m shared.runtime.topics write",
            file=sys.stderr,
        )
        return 1
    print(f"{len(declared())} topics à jour dans {STRIMZI_TOPICS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
