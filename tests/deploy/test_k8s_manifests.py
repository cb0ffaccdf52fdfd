"""deploy/k8s/ stays valid: every manifest against the Kubernetes JSON schemas (offline), and cross-checked.

The schemas come with the ``kubernetes-validate`` package (a dev dependency): JSON schemas generated
from the official Kubernetes OpenAPI, one set per release, read from the installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cpcs.settings import Settings
from cpcs_system.launcher import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes release the manifests must suit (autoscaling/v2 and batch/v1 Jobs are GA there).
KUBERNETES_VERSION = "1.29.0"
HTTP_SERVICES = ("ingest", "api", "catalog-cache")
WORKERS = ("calibrate", "reduce")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == kind}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize(
    ("filename", "document"), _documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_manifest_is_valid_against_the_kubernetes_schema(filename: str, document: dict[str, Any]) -> None:
    try:  # strict: unknown fields (a typo in a key) fail too
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{filename}: {document['kind']} {document['metadata']['name']}: {error.message}")


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _named("Deployment")["api"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_every_service_runs_its_own_deployment_with_probes() -> None:
    deployments = _named("Deployment")
    assert set(deployments) == set(SERVICE_NAMES)
    for name in SERVICE_NAMES:
        container = _container(deployments[name])
        assert container["command"] == ["cpcs", "service", "run", name]
        assert "livenessProbe" in container and "readinessProbe" in container, name
    for name in HTTP_SERVICES:
        container = _container(deployments[name])
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert _named("Service")[name]["spec"]["selector"] == {"app.kubernetes.io/name": name}
    for name in WORKERS:
        probe = _container(deployments[name])["readinessProbe"]["exec"]["command"]
        assert probe == ["cpcs", "service", "check"]


def test_calibrate_and_reduce_scale() -> None:
    autoscalers = _named("HorizontalPodAutoscaler")
    for name in WORKERS:
        target = autoscalers[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert 1 <= autoscalers[name]["spec"]["minReplicas"] < autoscalers[name]["spec"]["maxReplicas"]


def test_the_migration_job_does_what_the_compose_migration_does() -> None:
    job = _named("Job")["cpcs-migrate"]
    command = " ".join(_container(job)["command"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert command.replace('"', "") == " ".join(compose["services"]["migrate"]["command"]).replace(
        '"', ""
    ).replace("$$", "$")


def test_configuration_comes_from_the_config_map_and_the_secret_and_names_real_settings() -> None:
    config = _named("ConfigMap")["cpcs-config"]["data"]
    fields = {f"CPCS_{name.upper()}" for name in Settings.model_fields}
    assert set(config) <= fields, set(config) - fields
    assert not _named("Secret"), "secrets are made by the operator, never committed"
    claims = set(_named("PersistentVolumeClaim"))
    for _, document in _documents():
        if document["kind"] not in ("Deployment", "Job"):
            continue
        sources = _container(document)["envFrom"]
        assert {"configMapRef": {"name": "cpcs-config"}} in sources
        assert {"secretRef": {"name": "cpcs-secrets"}} in sources
        for volume in document["spec"]["template"]["spec"].get("volumes", []):
            assert volume["persistentVolumeClaim"]["claimName"] in claims
