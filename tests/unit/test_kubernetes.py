"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas (kubernetes-validate,
strict: no unknown field), the KEDA ScaledObjects against the fields KEDA defines, and what they
name checked against the project: the images docker/compose.yaml builds, the port the front's
image exposes, routes the front serves, settings the project reads, models it ships, metrics
its fronts export. No cluster runs here: this is what can be known without one."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from config.registry import DEFAULT_MODELS
from tests.unit.test_metrics import make, samples

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.33.0"  # a version current clusters run; the manifests use only stable APIs

# A ScaledObject's trigger: Prometheus (a query, its threshold) or the pods' CPU.
TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["prometheus", "cpu"]},
        "name": {"type": "string"},
        "metricType": {"enum": ["Utilization", "AverageValue"]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "prometheus"}}},
            "then": {
                "properties": {"metadata": {"required": ["serverAddress", "query", "threshold"]}}
            },
        },
        {
            "if": {"properties": {"type": {"const": "cpu"}}},
            "then": {
                "required": ["metricType"],
                "properties": {"metadata": {"required": ["value"]}},
            },
        },
    ],
}
# Its HPA's scaling behaviour: the stabilization windows (seconds, at most an hour).
WINDOW = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600}
    },
}
ADVANCED = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "horizontalPodAutoscalerConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "behavior": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"scaleUp": WINDOW, "scaleDown": WINDOW},
                }
            },
        }
    },
}
# The fields of KEDA's ScaledObject (keda.sh/v1alpha1) these manifests use, as KEDA's CRD
# defines them; anything else is refused.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": ADVANCED,
                "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
            },
        },
    },
}


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def containers() -> list[dict]:
    return [
        c
        for doc in of_kind("Deployment") + of_kind("StatefulSet")
        for c in doc["spec"]["template"]["spec"]["containers"]
    ]


def workers() -> list[dict]:
    return [d for d in of_kind("Deployment") if d["metadata"]["name"].startswith("llm-worker-")]


@pytest.mark.parametrize(
    "name, doc",
    manifests(),
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in manifests()],
)
def test_every_manifest_is_valid(name, doc):
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, SCALED_OBJECT)
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_gpu_worker():
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == files - {"worker-gpu.yaml"}


def test_images_are_the_ones_compose_builds():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    built = {s["image"] for s in compose["services"].values() if "build" in s and "image" in s}
    ours = {c["image"] for c in containers() if c["image"].startswith("llm-queue-")}
    assert ours and ours <= built, ours - built
    redis = {c["image"] for c in containers() if not c["image"].startswith("llm-queue-")}
    assert redis == {compose["services"]["redis"]["image"]}


def test_the_front_listens_where_its_image_does_and_probes_routes_it_serves(app):
    (front,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "llm-front"]
    pod = front["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    exposed = re.search(r"^EXPOSE (\d+)", (ROOT / "docker/front.Dockerfile").read_text(), re.M)
    assert container["ports"] == [{"name": "http", "containerPort": int(exposed.group(1))}]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == exposed.group(1)
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    probes = [container["readinessProbe"], container["livenessProbe"]]
    assert [p["httpGet"]["path"] for p in probes] == ["/ready", "/health"]
    assert {p["httpGet"]["path"] for p in probes} | {"/metrics"} <= routes
    (service,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "llm-front"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def settings_read() -> set[str]:
    """Every environment variable the project reads: its settings' and gunicorn's (quoted
    names), and the worker image's (``ENV NAME=``, ``$NAME``: MODELS, WORKER_NAME)."""
    names = set()
    for path in ("config/settings.py", "gunicorn.conf.py"):
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", (ROOT / path).read_text()))
    image = (ROOT / "docker" / "worker.Dockerfile").read_text()
    names |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", image))
    return names


def test_every_variable_set_is_one_the_project_reads():
    read = settings_read()
    assert {"REDIS_URL", "SHUTDOWN_TIMEOUT", "MODELS", "API_KEYS"} <= read
    given = set()
    for doc in of_kind("ConfigMap") + of_kind("Secret"):
        if doc["metadata"]["name"] != "llm-redis":  # the Redis pods' scripts
            given |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    for container in containers():
        given |= {e["name"] for e in container.get("env", [])}
    assert given <= read, given - read


def test_workers_serve_the_default_models_and_pods_outlast_their_drain():
    settings = next(d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "llm-settings")
    drain = float(settings["data"]["SHUTDOWN_TIMEOUT"])
    for deployment in of_kind("Deployment"):  # the front's and the workers'
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > drain
    served = set()
    for deployment in workers():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        served.add(env["MODELS"])
        assert deployment["metadata"]["name"].endswith(env["MODELS"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/cache" in mounts  # MODEL_CACHE_DIR of the worker image
    assert served == {spec.name for spec in DEFAULT_MODELS}


def test_redis_url_names_the_sentinels_of_the_statefulset():
    settings = next(d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "llm-settings")
    (redis,) = of_kind("StatefulSet")
    url = settings["data"]["REDIS_URL"]
    hosts = re.findall(r"sentinel://([^:;/]+):26379", url)
    name, service = redis["metadata"]["name"], redis["spec"]["serviceName"]
    assert hosts == [f"{name}-{i}.{service}" for i in range(redis["spec"]["replicas"])]
    scripts = next(d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "llm-redis")
    master = settings["data"]["REDIS_SENTINEL_MASTER"]
    assert f"sentinel monitor {master} " in scripts["data"]["sentinel.sh"]


def test_autoscaling_targets_the_deployments_on_metrics_the_fronts_export(app, client):
    deployments = {d["metadata"]["name"] for d in of_kind("Deployment")}
    client.get("/health")  # one request counted
    exported = {name for name, _ in samples(app.extensions["services"].metrics)}
    exported |= {name for name, _ in samples(make())}  # with models' rows, from heartbeats
    targets = set()
    for scaled in of_kind("ScaledObject"):
        targets.add(scaled["spec"]["scaleTargetRef"]["name"])
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "cpu":  # a share of what its pods request
                pod = next(
                    d["spec"]["template"]["spec"]
                    for d in of_kind("Deployment")
                    if d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]
                )
                assert all("cpu" in c["resources"]["requests"] for c in pod["containers"])
                continue
            used = set(re.findall(r"\b(llm_[a-z_]+)", trigger["metadata"]["query"]))
            assert used and used <= exported, used - exported
    assert targets == {d["metadata"]["name"] for d in workers()} | {"llm-front"}
    assert targets <= deployments
