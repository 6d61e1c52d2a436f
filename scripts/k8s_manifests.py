"""The Kubernetes objects of every service, generated from the code: deploy/k8s/base/services.yaml.

python scripts/k8s_manifests.py write|check

Each service that keeps data runs as three Deployments of the one image (docs/adr/0013):
- `<service>`: HTTP replicas behind the Service (`CIVIQUE_RUN_CONSUMERS=false`, no relay, no worker process);
- `<service>-relay`: the one replica that publishes the service's outbox;
- `<service>-worker`: the consumer groups and the jobs, scaled by KEDA on the groups' Kafka lag, one trigger per
  group and topic (read from the service's subscribers), at most as many replicas as partitions.
The website (no data) is one Deployment. Probes, resources, security context, PodDisruptionBudgets, Services and
the gateway's HPA come with them. The test suite fails when the committed file differs (`check`).
"""

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.runtime.app import Service, ServiceContext  # noqa: E402
from shared.runtime.replay import ProjectionsOnly  # noqa: E402
from shared.runtime.settings import Settings  # noqa: E402
from shared.runtime.topics import DEFAULT_PARTITIONS  # noqa: E402

TARGET = ROOT / "deploy" / "k8s" / "base" / "services.yaml"
DATA_SERVICES = ("gateway", "missions", "moderation", "volunteers", "matching", "notifications")
PUBLIC = ("gateway", "web")  # the front doors: no fixed replicas, an HPA on CPU
# what takes traffic from outside (the ingress), NetworkPolicy "public": the front doors, and the moderation
# service's HTTP pods, which serve the referents' pages (/moderation…, /departements/…; ADR 0012's amendment)
EXPOSED = (*PUBLIC, "moderation")
IMAGE = "civique"  # the overlays' `images:` give its registry and tag
PORT = 8000
LAG_THRESHOLD = 200  # records behind per replica before KEDA adds one (a batch is 500 at most)
PART_OF = "civique"


def consumer_groups(service: Service) -> dict[str, list[str]]:
    """Consumer group → topics, from the service's own subscribers (built on a context whose components refuse
    to work, as a replay builds them: nothing runs)."""
    settings = Settings()
    storage: Any = SimpleNamespace(store=None, documents=None)
    context = ServiceContext(service.name, settings, storage, None, None, ProjectionsOnly())  # type: ignore[arg-type]
    return {subscriber.group: subscriber.topics for subscriber in service.subscribers(context)}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def container(name: str, command: str, env: dict[str, str], resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": ["python", "-m", command],
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": [{"configMapRef": {"name": "civique-settings"}}],
        "env": [{"name": key, "value": value} for key, value in env.items()] + SECRETS,
        # /healthz: the process answers (a restart helps); /readyz: its stores, bus, groups, relay and jobs
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # the endpoints forget the pod before it stops taking requests
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


SECRETS = [
    {"name": f"CIVIQUE_{key}", "valueFrom": {"secretKeyRef": {"name": "civique-secrets", "key": f"CIVIQUE_{key}"}}}
    for key in ("JWT_SECRET", "INTERNAL_TOKEN", "LINK_SECRET", "PERSONAL_DATA_PEPPER")
]
HTTP_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
RELAY_RESOURCES = {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "384Mi"}}
WORKER_RESOURCES = {"requests": {"cpu": "500m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}}


def deployment(
    name: str, service: str, component: str, env: dict[str, str], resources: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """A Deployment of the image running `python -m services.<service>` with `env` beside the shared settings."""
    pod_labels = labels(service, component)
    if service in EXPOSED and component == "http":
        pod_labels["civique.fr/exposure"] = "public"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(service, component)},
        "spec": {
            **spec,
            "selector": {"matchLabels": {k: v for k, v in pod_labels.items() if k != "app.kubernetes.io/part-of"}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,  # CIVIQUE_* variables only
                    # the batch in hand, its commit, the relay's drain (CIVIQUE_SHUTDOWN_DRAIN_S) and the preStop
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container(service, f"services.{service}", env, resources)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def http_service(service: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "labels": labels(service, "http")},
        "spec": {
            "selector": {"app.kubernetes.io/name": service, "app.kubernetes.io/component": "http"},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }


def metrics_service(service: str) -> dict[str, Any]:
    """Headless, over every pod of the service (HTTP, relay, workers): what the ServiceMonitor scrapes."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{service}-metrics",
            "labels": {**labels(service, "metrics"), "civique.fr/metrics": "true"},
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # a pod failing its readiness is still scraped: the alert needs it
            "selector": {"app.kubernetes.io/name": service},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }


def disruption_budget(name: str, service: str, component: str, **budget: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels(service, component)},
        "spec": {
            **budget,
            "selector": {"matchLabels": {"app.kubernetes.io/name": service, "app.kubernetes.io/component": component}},
        },
    }


def cpu_autoscaler(service: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": service, "labels": labels(service, "http")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def lag_scaler(service: str, groups: dict[str, list[str]]) -> dict[str, Any]:
    """KEDA on the committed lag of each consumer group on each of its topics (the scaler reads what
    civique_consumer_lag shows); the largest wins. Never more replicas than partitions: a member beyond them
    would own none (ADR 0002, the range assignor)."""
    triggers = [
        {
            "type": "kafka",
            "name": f"{group}-{topic}".replace(".", "-").replace("_", "-"),
            "metadata": {
                "bootstrapServersFromEnv": "CIVIQUE_KAFKA_BOOTSTRAP_SERVERS",
                "consumerGroup": group,
                "topic": topic,
                "lagThreshold": str(LAG_THRESHOLD),
                "activationLagThreshold": "0",
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
            },
        }
        for group, topics in groups.items()
        for topic in topics
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"{service}-worker", "labels": labels(service, "worker")},
        "spec": {
            "scaleTargetRef": {"name": f"{service}-worker"},
            "minReplicaCount": 1,  # the jobs (reminders, digests, the e-mail sender) run in the workers
            "maxReplicaCount": DEFAULT_PARTITIONS,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": triggers,
        },
    }


def objects() -> list[dict[str, Any]]:
    """Every generated object, service after service."""
    found: list[dict[str, Any]] = []
    for name in DATA_SERVICES:
        service: Service = importlib.import_module(f"services.{name}").service
        public = name in PUBLIC
        replicas = 2
        found += [
            deployment(
                name,
                name,
                "http",
                {"CIVIQUE_RUN_CONSUMERS": "false", "CIVIQUE_RUN_RELAYS": "false", "CIVIQUE_WORKERS": "0"},
                HTTP_RESOURCES,
                **({} if public else {"replicas": replicas}),  # the gateway's replicas are its HPA's
            ),
            deployment(
                f"{name}-relay",
                name,
                "relay",
                {"CIVIQUE_RUN_CONSUMERS": "false", "CIVIQUE_RUN_RELAYS": "true", "CIVIQUE_WORKERS": "0"},
                RELAY_RESOURCES,
                replicas=1,  # one is enough; two would be safe, each event published twice (docs/adr/0013)
                strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            ),
            deployment(
                f"{name}-worker",
                name,
                "worker",
                {"CIVIQUE_RUN_CONSUMERS": "true", "CIVIQUE_RUN_RELAYS": "false", "CIVIQUE_WORKERS": "0"},
                WORKER_RESOURCES,
            ),
            http_service(name),
            metrics_service(name),
            disruption_budget(name, name, "http", minAvailable=1),
            disruption_budget(f"{name}-relay", name, "relay", maxUnavailable=1),
            disruption_budget(f"{name}-worker", name, "worker", maxUnavailable=1),
            lag_scaler(name, consumer_groups(service)),
        ]
        if public:
            found.append(cpu_autoscaler(name, 2, 10))
    found += [
        deployment("web", "web", "http", {"CIVIQUE_WORKERS": "0"}, HTTP_RESOURCES),
        http_service("web"),
        metrics_service("web"),
        disruption_budget("web", "web", "http", minAvailable=1),
        cpu_autoscaler("web", 2, 6),
    ]
    return found


def rendered() -> str:
    import yaml

    header = "# Generated by `python scripts/k8s_manifests.py write` from the services' code: do not edit.\n"
    return header + "---\n".join(yaml.safe_dump(o, sort_keys=False, allow_unicode=True, width=120) for o in objects())


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    wanted = rendered()
    if command == "write":
        TARGET.write_text(wanted)
        print(f"écrit : {TARGET.relative_to(ROOT)}")
        return 0
    if command != "check":
        print("utilisation : python scripts/k8s_manifests.py write|check", file=sys.stderr)
        return 2
    if not TARGET.exists() or TARGET.read_text() != wanted:
        print(f"{TARGET.relative_to(ROOT)} diffère du code : python scripts/k8s_manifests.py write", file=sys.stderr)
        return 1
    print(f"à jour : {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
