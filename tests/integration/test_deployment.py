"""The operator's side, checked offline (no Docker engine, no cluster): the compose file against the Compose
specification, every kustomize overlay built and each object validated (Kubernetes' own schemas; the KEDA,
Strimzi and Prometheus operator resources against the schemas kept in deploy/k8s/schemas), and everything they
name is real: settings, commands, probe paths, scraped ports, topics and consumer groups, metrics."""

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.runtime import topics
from shared.runtime.app import Service, create_app
from shared.runtime.consumers import dead_letter_topic
from shared.runtime.probe import PROBED
from shared.runtime.settings import Settings
from tests.conftest import ROOT, env_of, eventually, free_port, make_settings, wait_until

OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.33.0"
SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
SETTINGS = {f"CIVIQUE_{name.upper()}" for name in Settings.model_fields}
IMAGE = re.compile(r"(^civique($|:))|/civique:")  # the one image, as the overlays and compose name it


@cache
def kustomize() -> str:
    found = subprocess.run([ROOT / "scripts" / "tools", "kustomize"], capture_output=True, text=True, timeout=600)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    built = subprocess.run(
        [kustomize(), "build", ROOT / "deploy" / "k8s" / "overlays" / overlay],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    return tuple(d for d in yaml.safe_load_all(built.stdout) if d)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def containers(objects: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield from o["spec"]["template"]["spec"]["containers"]


def is_ours(container: dict[str, Any]) -> bool:
    return bool(IMAGE.search(container.get("image", "")))


def served_paths() -> set[str]:
    app = create_app(Settings(backend="embedded"), [Service("probe")])
    return {getattr(route, "path", "") for route in app.routes}


def check_command(command: list[str]) -> None:
    """`python -m <module> …`: the module exists and runs as a program."""
    assert command[:2] == ["python", "-m"], command
    spec = importlib.util.find_spec(command[2])
    assert spec is not None, f"no module {command[2]}"
    if spec.submodule_search_locations:  # a package: its __main__
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, command
    else:
        assert spec.origin and "__main__" in Path(spec.origin).read_text(), command


@cache
def consumer_groups() -> dict[str, list[str]]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import k8s_manifests

    groups: dict[str, list[str]] = {}
    for name in k8s_manifests.DATA_SERVICES:
        groups |= k8s_manifests.consumer_groups(importlib.import_module(f"services.{name}").service)
    return groups


# ---- generated files, compose, the image ----


def test_topics_are_declared_once_and_the_generated_files_follow():
    declared = {t.name: t for t in topics.declared()}
    from shared.events import catalog

    for topic in catalog.topics():
        assert topic in declared and dead_letter_topic(topic) in declared
        assert declared[dead_letter_topic(topic)].dead_letters_of == topic
        assert declared[topic].partitions == declared[dead_letter_topic(topic)].partitions == Settings().partitions
    assert all(t.config() == {"retention.ms": "-1", "cleanup.policy": "delete"} for t in declared.values())
    assert topics.main(["check"]) == 0  # deploy/k8s/overlays/prod/kafka/topics.yaml
    generated = subprocess.run(
        [sys.executable, "scripts/k8s_manifests.py", "check"], cwd=ROOT, capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stderr  # deploy/k8s/base/services.yaml


def test_the_compose_file_follows_the_compose_specification():
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_platform_names_only_real_settings_commands_probes_and_targets():
    services = compose()["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "civique:local"}
    assert {
        "gateway",
        "gateway-worker",
        "missions",
        "moderation",
        "volunteers",
        "matching",
        "notifications",
        "web",
    } <= set(ours)
    for name, service in ours.items():
        assert set(service["environment"]) <= SETTINGS, (name, set(service["environment"]) - SETTINGS)
        check_command(service["command"])
        assert service["read_only"] and "/tmp" in service["tmpfs"]
        health = service["healthcheck"]
        if not health.get("disable"):
            check_command(health["test"][1:4])
            assert health["test"][4] in PROBED and health["test"][4] in served_paths()
    # the gateway's HTTP replicas apart from its workers; everything waits for its topics and a replica set
    assert ours["gateway"]["environment"]["CIVIQUE_RUN_CONSUMERS"] == "false"
    assert "CIVIQUE_RUN_CONSUMERS" not in ours["gateway-worker"]["environment"]
    assert ours["gateway-worker"]["environment"]["CIVIQUE_RUN_RELAYS"] == "false"
    assert ours["missions"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert ours["topics"]["command"][:4] == ["python", "-m", "shared.runtime.topics", "create"]
    assert services["kafka"]["image"] == f"apache/kafka:{infra_kafka_version()}"
    # Prometheus scrapes every container of ours on its metrics port, with the labels the alerts read
    scraped = yaml.safe_load((ROOT / "deploy/compose/prometheus/prometheus.yml").read_text())
    targets = {t for job in scraped["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:8000" for name in ours if name != "topics"}
    assert all(job["metrics_path"] == "/metrics" for job in scraped["scrape_configs"])
    assert "/metrics" in served_paths()


def infra_kafka_version() -> str:
    found = re.search(r"KAFKA_VERSION=\$\{CIVIQUE_KAFKA_VERSION:-([0-9.]+)\}", (ROOT / "scripts/infra").read_text())
    assert found
    return found.group(1)


def test_the_image_is_multi_stage_non_root_and_takes_only_what_it_needs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    final = stages[-1]
    assert len(stages) == 3 and "AS web-assets" in stages[0] and "npm ci" in stages[0]
    assert "uv sync --frozen --no-dev" in stages[1]
    assert "RUN pip" not in final and "apt-get" not in final and "npm" not in final  # no build tool at the end
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert "COPY --from=web-assets /build/web/node_modules ./web/node_modules" in final
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in (
        "!pyproject.toml",
        "!uv.lock",
        "!shared",
        "!services",
        "!web/package.json",
        "!web/package-lock.json",
    ):
        assert needed in ignored


# ---- Kubernetes ----


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_builds_and_every_object_is_valid(overlay):
    objects = rendered(overlay)
    schemas = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    for o in objects:
        group_version = o["apiVersion"].replace("/", "_")
        custom = f"{group_version}_{o['kind'].lower()}"
        if custom in schemas:
            jsonschema.validate(o, schemas[custom])
        else:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
    assert not [o for o in objects if o["kind"] == "Secret"], "no secret in the repository: the operator makes it"
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"} <= kinds
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    if overlay == "prod":
        assert {"Kafka", "KafkaNodePool", "KafkaTopic"} <= kinds


def test_a_mistake_in_an_object_fails_the_validation():  # the validators above do refuse
    deployment = next(o for o in rendered("dev") if o["kind"] == "Deployment")
    wrong = json.loads(json.dumps(deployment))
    wrong["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)
    scaler = json.loads(json.dumps(of_kind(rendered("dev"), "ScaledObject")[0]))
    scaler["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaler, json.loads((SCHEMAS / "keda.sh_v1alpha1_scaledobject.json").read_text()))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_name_only_real_settings_commands_probes_ports_topics_and_groups(overlay):
    objects = rendered(overlay)
    paths = served_paths()
    [settings_map] = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("civique-settings")]
    assert set(settings_map["data"]) <= SETTINGS, set(settings_map["data"]) - SETTINGS
    assert "CIVIQUE_NAMESPACE" not in settings_map["data"]  # the KEDA triggers name groups and topics unprefixed
    ours = [c for c in containers(objects) if is_ours(c)]
    assert len(ours) >= 19  # three per service keeping data, the site; dev adds its topics Job
    for container in ours:
        names = {e["name"] for e in container.get("env", [])}
        assert names <= SETTINGS, names - SETTINGS
        check_command(container["command"])
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["path"] in paths
                assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    for name in ("gateway", "missions", "moderation", "volunteers", "matching", "notifications"):
        assert deployments[f"{name}-relay"]["spec"]["replicas"] == 1  # one relay per event store (ADR 0013)
        env = {e["name"]: e.get("value") for e in deployments[name]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["CIVIQUE_RUN_CONSUMERS"] == "false" and env["CIVIQUE_RUN_RELAYS"] == "false"
    # every Service's target port is a port of the pods it selects; the ServiceMonitor scrapes /metrics there
    pods = [d["spec"]["template"] for d in deployments.values()]
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        selected = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        if not any(is_ours(c) for p in selected for c in p["spec"]["containers"]):
            continue  # dev's Kafka, MongoDB, Mailpit
        for port in service["spec"]["ports"]:
            assert all(port["targetPort"] in {q["name"] for q in p["spec"]["containers"][0]["ports"]} for p in selected)
    [monitor] = of_kind(objects, "ServiceMonitor")
    scraped = [
        s
        for s in of_kind(objects, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
    ]
    assert {s["metadata"]["name"] for s in scraped} >= {
        f"{n}-metrics" for n in ("gateway", "missions", "notifications", "web")
    }
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics" and endpoint["path"] in paths
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in scraped)
    # KEDA: every group of every service, on its real topics, never more replicas than partitions
    declared = {t.name: t for t in topics.declared()}
    groups = consumer_groups()
    triggered: dict[str, set[str]] = {}
    for scaler in of_kind(objects, "ScaledObject"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in deployments
        assert scaler["spec"]["maxReplicaCount"] <= min(declared[t].partitions for t in declared)
        for trigger in scaler["spec"]["triggers"]:
            metadata = trigger["metadata"]
            assert metadata["topic"] in declared and metadata["bootstrapServersFromEnv"] in SETTINGS
            triggered.setdefault(metadata["consumerGroup"], set()).add(metadata["topic"])
    assert triggered == {group: set(group_topics) for group, group_topics in groups.items()}
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")}
    assert "gateway" in autoscaled and "replicas" not in deployments["gateway"]["spec"]
    if overlay == "prod":  # the KafkaTopics are the declaration
        kafka_topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(objects, "KafkaTopic")}
        assert set(kafka_topics) == set(declared)
        assert all(kafka_topics[n]["partitions"] == t.partitions for n, t in declared.items())
        assert all(spec["config"]["retention.ms"] == "-1" for spec in kafka_topics.values())


def test_compose_evaluates_the_same_alerts_as_the_prometheus_rule():
    rule = yaml.safe_load((ROOT / "deploy/k8s/base/monitoring/alerts.yaml").read_text())
    in_compose = yaml.safe_load((ROOT / "deploy/compose/prometheus/alerts.yml").read_text())
    assert in_compose["groups"] == rule["spec"]["groups"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    wanted = {"ConsumerLagGrowing", "DeadLettersPending", "OutboxBacklog", "NotReady", "MailDeadLetters", "Http5xx"}
    assert {f"Civique{a}" for a in wanted} <= alerts


# ---- the metrics the dashboard and the alerts read ----


def exported(text: str) -> set[str]:
    """The series names a /metrics page can give, from its `# TYPE` lines (a labelled metric with no sample yet
    still has one)."""
    names = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        base = name.removesuffix("_total") if kind == "counter" else name  # prometheus-client types counters so
        names |= {base + suffix for suffix in suffixes.get(kind, ("",))}
    return names


@pytest.fixture(scope="module")
def platform_metrics(tmp_path_factory) -> str:
    """/metrics of the whole platform (`python -m services`, embedded), once it is ready."""
    settings = make_settings("embedded", tmp_path_factory.mktemp("platform"), None)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services"],
        cwd=ROOT,
        env=env_of(settings.model_copy(update={"port": port, "workers": 0})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready() -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, within=90, what="the platform's readiness")
        yield httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        process.terminate()
        process.wait(timeout=30)


def queries() -> dict[str, str]:
    dashboard = json.loads((ROOT / "deploy/k8s/base/monitoring/civique-dashboard.json").read_text())
    found = {f"panel {p['title']}": t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])}
    rule = yaml.safe_load((ROOT / "deploy/k8s/base/monitoring/alerts.yaml").read_text())
    found |= {f"alert {r['alert']}": r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    return found


def test_the_dashboard_and_the_alerts_read_metrics_the_platform_exports(platform_metrics):
    names = exported(platform_metrics)
    assert "civique_consumer_lag" in names and "civique_readiness_check" in names  # the page was read
    read = set()
    for where, expr in queries().items():
        metrics = set(re.findall(r"\b(civique_[a-z0-9_]+)\b", expr))
        assert metrics or "up{" in expr, f"{where} reads no metric: {expr}"  # `up`: Prometheus' own, per target
        assert metrics <= names, f"{where} reads {metrics - names}, which no process exports"
        read |= metrics
    # and what matters is on the dashboard
    wanted = {
        "civique_consumer_lag",
        "civique_outbox_backlog",
        "civique_dead_letters_pending",
        "civique_mail_dead_letters_total",
    }
    assert wanted | {"civique_http_request_seconds_count", "civique_readiness_check"} <= read


async def test_the_topics_one_shot_creates_the_declared_topics_and_aligns_older_ones(servers, tmp_path):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    settings = make_settings("kafka+mongo", tmp_path, servers)
    old = f"{settings.namespace}missions.mission"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:  # a topic from before the declaration: Kafka's seven days
        await admin.create_topics([NewTopic(old, settings.partitions, 1, topic_configs={"retention.ms": "604800000"})])
        created = await topics.create(settings, replicas=1)
        declared = [f"{settings.namespace}{t.name}" for t in topics.declared()]
        assert sorted(created) == sorted(set(declared) - {old})
        assert await topics.create(settings, replicas=1) == []  # once is enough: a second run creates nothing

        async def aligned() -> bool:  # a broker's view of the configurations follows the controller's shortly
            described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in declared])
            configs = {
                resource[3]: {entry[0]: entry[1] for entry in resource[4]}
                for response in described
                for resource in response.resources
            }
            return all((configs[n]["retention.ms"], configs[n]["cleanup.policy"]) == ("-1", "delete") for n in declared)

        await eventually(aligned, within=20, what="every declared topic kept forever, never compacted")
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(declared)}
        assert set(partitions.values()) == {settings.partitions}
    finally:
        await admin.close()
