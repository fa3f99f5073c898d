"""deploy/k8s: the manifests against Kubernetes' schemas, and against each other.

Built-in kinds are checked with PyPI `kubernetes-validate` (the OpenAPI
schemas of each Kubernetes release, strict: unknown fields fail), the
PodMonitor with the Prometheus Operator's CRD models (PyPI
`cloudcoil-models-prometheus-operator`, pydantic models generated from the
CRDs: types, enums and patterns, plus a round trip that fails on unknown
keys). The worker's settings loader checks the environment and YAML config the
manifests give it. No cluster is involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PodMonitor
from deploy_support import DEPLOY, expand_k8s_refs, load_yaml_docs, settings_from

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes release still common in managed clusters, and the newest known.
VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
UID = 10001  # the Dockerfile's worker user

Doc = dict[str, Any]


def all_docs() -> list[tuple[str, Doc]]:
    return [(path.name, doc) for path in MANIFESTS for doc in load_yaml_docs(path)]


def find(kind: str, name: str | None = None) -> Doc:
    matches = [
        doc
        for _, doc in all_docs()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def statefulset() -> Doc:
    return find("StatefulSet")


def container(statefulset: Doc) -> Doc:
    [worker] = statefulset["spec"]["template"]["spec"]["containers"]
    return worker


def config_env() -> dict[str, str]:
    data: dict[str, str] = find("ConfigMap", "cxstream-env")["data"]
    return data


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("file", "doc"),
    [d for d in all_docs() if d[1]["kind"] != "PodMonitor"],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_builtin_kinds_validate(file: str, doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_is_strict() -> None:
    doc = find("StatefulSet")
    doc["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def podmonitor_round_trip(doc: Doc) -> Doc:
    dumped: Doc = PodMonitor.model_validate(doc).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    return dumped


def test_podmonitor_matches_its_crd(statefulset: Doc) -> None:
    monitor = find("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert podmonitor_round_trip(monitor) == monitor, "a key the CRD does not know"
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"] for p in container(statefulset)["ports"]}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_the_podmonitor_check_catches_mistakes() -> None:
    monitor = find("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert podmonitor_round_trip(monitor) != monitor
    monitor = find("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ValueError, match="interval"):
        PodMonitor.model_validate(monitor)


def test_everything_is_in_one_namespace() -> None:
    namespace = find("Namespace")["metadata"]["name"]
    for file, doc in all_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, file


def test_kustomization_lists_the_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    optional = {"secret.template.yaml", "podmonitor.yaml"}
    assert listed == {p.name for p in MANIFESTS} - optional
    images = {image["name"] for image in kustomization.get("images", [])}
    assert container(find("StatefulSet"))["image"].split(":")[0] in images


def test_secret_is_a_template() -> None:
    secret = find("Secret")
    assert set(secret["stringData"].values()) == {"CHANGE-ME"}


def test_statefulset_gives_each_worker_its_own_volume(statefulset: Doc) -> None:
    spec = statefulset["spec"]
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(statefulset)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == config_env()["CXSTREAM_DATADIR"]
    pod_volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
    assert claim["metadata"]["name"] not in pod_volumes


def test_replicas_fit_the_partitions(statefulset: Doc) -> None:
    config = yaml.safe_load(find("ConfigMap", "cxstream-config")["data"]["cxstream.yaml"])
    assert 1 <= statefulset["spec"]["replicas"] <= config["topics"]["partitions"]


def test_services_select_the_workers(statefulset: Doc) -> None:
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    headless = find("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    metrics = find("Service", "cxstream-metrics")
    port = int(config_env()["CXSTREAM_METRICS_PORT"])
    named = {p["name"]: p["containerPort"] for p in container(statefulset)["ports"]}
    for service in (headless, metrics):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        for service_port in service["spec"]["ports"]:
            assert named[service_port["targetPort"]] == port
    annotations = metrics["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    budget = find("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probes_use_healthz_on_the_metrics_port(statefulset: Doc) -> None:
    worker = container(statefulset)
    port = int(config_env()["CXSTREAM_METRICS_PORT"])
    named = {p["name"]: p["containerPort"] for p in worker["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert named.get(get["port"], get["port"]) == port, probe
    resources = worker["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_runs_as_the_image_user_without_privileges(statefulset: Doc) -> None:
    pod = statefulset["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == UID
    worker = container(statefulset)["securityContext"]
    assert worker["allowPrivilegeEscalation"] is False
    assert worker["readOnlyRootFilesystem"] is True
    assert worker["capabilities"]["drop"] == ["ALL"]
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG UID={UID}" in dockerfile


def worker_env(statefulset: Doc) -> dict[str, str]:
    """The container's environment as the kubelet builds it, secrets as placeholders."""
    worker = container(statefulset)
    secret = find("Secret")
    env: dict[str, str] = {}
    for source in worker.get("envFrom", []):
        env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in worker["env"]:
        if "value" in item:
            env[item["name"]] = expand_k8s_refs(item["value"], env)
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], f"the Secret has no key {ref['key']}"
        env[item["name"]] = f"placeholder-{ref['key']}"
    return env


def test_worker_accepts_its_settings(statefulset: Doc, tmp_path: Path) -> None:
    env = worker_env(statefulset)
    assert "$(" not in env["CXSTREAM_REDIS_URL"], "an undefined $(VAR) in CXSTREAM_REDIS_URL"
    mounts = {m["name"]: m["mountPath"] for m in container(statefulset)["volumeMounts"]}
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    config_path = Path(env["CXSTREAM_CONFIG"])
    [name] = [n for n, path in mounts.items() if config_path.parent == Path(path)]
    config_map = find("ConfigMap", volumes[name]["configMap"]["name"])
    text = config_map["data"][config_path.name]
    settings = settings_from(env, text, tmp_path)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password is not None
    assert settings.redis_url.startswith("redis://:placeholder-redis-password@")
    assert settings.metrics_bind == "0.0.0.0"
    assert settings.alerts, "the example config has alert rules"
