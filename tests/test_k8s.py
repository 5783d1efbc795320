"""deploy/k8s/ manifests: valid against the Kubernetes JSON schemas (kubernetes-validate ships
them, so this works offline), strict (no unknown fields), and consistent with each other and
with the settings and metrics of the code they run."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.ingest.gateway import LOG_INGEST
from app.runtime.metrics import SPECS
from app.settings import Settings

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
DOCKERFILE = K8S.parent / "Dockerfile"
# The oldest version with gRPC probes GA (1.27) and the newest the package has schemas for.
VERSIONS = ["1.27.0", "1.37.0"]


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def named(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in documents()
             if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_strictly(version: str) -> None:
    docs = documents()
    assert {doc["kind"] for _, doc in docs} >= {
        "ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler"}
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} is not valid for "
                        f"Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_the_validator_refuses_a_broken_manifest() -> None:
    """The check can fail: an unknown field and a wrong type are caught."""
    web = copy.deepcopy(named("Deployment", "laas-web"))
    web["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(web, VERSIONS[-1], strict=True)
    web = copy.deepcopy(named("Deployment", "laas-web"))
    web["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="integer"):
        kubernetes_validate.validate(web, VERSIONS[-1], strict=True)


def test_the_processes_are_the_laas_commands_with_probes_and_resources() -> None:
    commands = {}
    for doc in workloads():
        spec = doc["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        commands[doc["metadata"]["name"]] = container["command"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert "livenessProbe" in container and "startupProbe" in container
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind, {})
            port = (probe.get("httpGet") or probe.get("grpc") or {}).get("port")
            if port is not None:
                assert port in ports or port in ports.values(), f"{kind} port {port}"
        assert doc["spec"]["selector"]["matchLabels"].items() <= \
            doc["spec"]["template"]["metadata"]["labels"].items()
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.M)
    assert user, "the image's USER is not numeric: runAsNonRoot could not verify it"
    for doc in workloads():
        pod = doc["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] and (pod["runAsUser"], pod["runAsGroup"]) == \
            (int(user[1]), int(user[2]))
    assert commands == {"laas-web": ["laas", "web"], "laas-gateway": ["laas", "gateway"],
                        "laas-worker": ["laas", "worker"]}
    web = named("Deployment", "laas-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    gateway = named("Deployment", "laas-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["grpc"]["port"] == Settings.model_construct().gateway_port
    assert gateway["readinessProbe"]["grpc"]["service"] == LOG_INGEST  # not the process's ""


def test_settings_come_from_the_configmap_and_secret_and_are_real_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    config, secret = named("ConfigMap", "laas-config"), named("Secret", "laas-secrets")
    for key in [*config["data"], *secret["stringData"]]:
        assert key.removeprefix("LAAS_") in fields, f"{key} is not a setting"
    assert {"LAAS_SECRET_KEY", "LAAS_DATABASE_URL"} <= set(secret["stringData"])
    assert not {"LAAS_SECRET_KEY", "LAAS_DATABASE_URL"} & set(config["data"])
    # off loopback in a pod, so plain HTTP/gRPC must be allowed explicitly (TLS at the ingress)
    assert config["data"]["LAAS_WEB_HOST"] == config["data"]["LAAS_GATEWAY_HOST"] == "0.0.0.0"
    assert config["data"]["LAAS_TLS_PLAINTEXT_OK"] == "true"
    defaults = Settings.model_construct()
    ports = {"LAAS_WEB_PORT": defaults.web_port, "LAAS_GATEWAY_PORT": defaults.gateway_port,
             "LAAS_GATEWAY_METRICS_PORT": defaults.gateway_metrics_port,
             "LAAS_OTLP_HTTP_PORT": defaults.otlp_http_port,
             "LAAS_WORKER_WEB_PORT": defaults.worker_web_port}
    assert {k: int(config["data"][k]) for k in ports} == ports
    for doc in workloads():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "laas-config"}},
                                        {"secretRef": {"name": "laas-secrets"}}]


def test_services_select_their_pods_and_scrape_ports_are_served() -> None:
    pods = {doc["metadata"]["name"]: doc["spec"]["template"] for doc in workloads()}
    for _, doc in documents():
        if doc["kind"] != "Service":
            continue
        template = pods[doc["metadata"]["name"]]
        assert doc["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        names = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in doc["spec"]["ports"]} <= names
    for template in pods.values():
        notes = template["metadata"]["annotations"]
        ports = {p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert int(notes["prometheus.io/port"]) in ports and notes["prometheus.io/path"] == \
            "/metrics"


def test_workers_scale_on_consumer_lag() -> None:
    hpa = named("HorizontalPodAutoscaler", "laas-worker")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": "laas-worker"}
    (metric,) = hpa["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] in SPECS  # a metric the workers export
    assert SPECS[metric["external"]["metric"]["name"]].kind == "gauge"
    partitions = int(named("ConfigMap", "laas-config")["data"]["LAAS_PARTITIONS"])
    assert hpa["maxReplicas"] <= partitions  # more workers than partitions would idle
