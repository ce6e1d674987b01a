"""The Helm chart (helm/serving-exporter), rendered offline and checked against the real consumers.

- Rendering: Helm's own Go library from PyPI (helm-python-sdk), no helm binary and no cluster,
  with the default values and each helm/serving-exporter/ci/*-values.yaml, and the sidecar
  example charts (helm/examples/model-server, helm/examples/vllm-server) with this chart as their
  dependency.
- Core resources: kubernetes-validate, strict (unknown fields rejected), against the oldest
  Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the package knows.
- Prometheus Operator resources (ServiceMonitor, PodMonitor, PrometheusRule): kubernetes-validate
  has no schemas for CRDs, so they are checked against a strict subset of the
  monitoring.coreos.com/v1 API written out below; the PrometheusRule's groups also go through
  `promtool check rules`.
- The exporter's side: the rendered container arguments go through the CLI's own parser and the
  rendered configuration file and environment through its own settings loader; the self-hosted
  modes' rendered configuration drives the real self-hosted discovery and source (the vLLM sidecar
  scrapes a local server answering a recorded vLLM body on 127.0.0.1).
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import build_parser
from exporter.config import load_settings
from exporter.model import EndpointInfo
from exporter.simulator import build_demo_workspace
from exporter.sources.selfhosted import SelfHostedSource
from exporter.sources.selfhosted.discovery import Discovery

from .conftest import require_binary
from .selfhosted_replicas import Replicas

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "serving-exporter"
EXAMPLE = REPO / "helm" / "examples" / "model-server"
VLLM_EXAMPLE = REPO / "helm" / "examples" / "vllm-server"
SIDECAR_EXAMPLES = {"example", "vllm-example"}  # all_pods' names for the two example charts
CASES: dict[str, Path | None] = {"default": None, **{p.name.removesuffix("-values.yaml"): p
                                                     for p in sorted((CHART / "ci").glob("*-values.yaml"))}}
RELEASE, NAMESPACE = "serving-exporter", "monitoring"
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
CREDENTIALS = {  # values path -> environment variable the container gets
    ("databricks", "token"): "DATABRICKS_TOKEN",
    ("databricks", "clientId"): "DATABRICKS_CLIENT_ID",
    ("databricks", "clientSecret"): "DATABRICKS_CLIENT_SECRET",
    ("datadog", "apiKey"): "DD_API_KEY",
    ("datadog", "appKey"): "DD_APP_KEY",
}
SECRET_KEY_OF = {"DATABRICKS_TOKEN": "token", "DATABRICKS_CLIENT_ID": "clientId", "DATABRICKS_CLIENT_SECRET": "clientSecret",
                 "DD_API_KEY": "datadogApiKey", "DD_APP_KEY": "datadogAppKey"}


def require_module(name: str) -> Any:
    """A test dependency from the `test` extra; missing, it fails under CI=true and skips elsewhere."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


# ---- rendering ------------------------------------------------------------------------------------

def values_of(case: str) -> dict[str, Any]:
    path = CASES[case]
    return yaml.safe_load(path.read_text()) if path else {}


def render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    helm = require_module("helm_python")
    with helm.Chart.load(str(chart)) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE)


@cache
def _rendered(case: str) -> tuple[tuple[str, str], ...]:
    return tuple(render(values_of(case)).items())


def manifests(case: str) -> dict[str, str]:
    return dict(_rendered(case))


def resources(out: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for name, text in sorted(out.items()) if not name.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def exporter_containers(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(pod spec, exporter container) of every workload, found by the exporter's image."""
    found = []
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            pod = doc["spec"]["template"]["spec"]
            found += [(pod, c) for c in pod["containers"] if "/serving-exporter:" in c["image"]]
    return found


def with_dependency(example: Path, tmp: Path) -> Path:
    """An example chart with this chart as its dependency, laid out as `helm dependency build`
    would (the chart in charts/)."""
    root = tmp / example.name
    shutil.copytree(example, root, ignore=shutil.ignore_patterns("charts"))
    shutil.copytree(CHART, root / "charts" / "serving-exporter")
    return root


@pytest.fixture(scope="module")
def example_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_dependency(EXAMPLE, tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def vllm_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_dependency(VLLM_EXAMPLE, tmp_path_factory.mktemp("vllm-example"))


@pytest.fixture(scope="module")
def vllm_example(vllm_chart: Path) -> dict[str, str]:
    return render({}, chart=vllm_chart)


@pytest.fixture(scope="module")
def example(example_chart: Path) -> dict[str, str]:
    return render({}, chart=example_chart)


# ---- what each values file renders ------------------------------------------------------------------

EXPECTED = {
    "default": {("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter"),
                ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter"),
                ("ServiceAccount", "serving-exporter")},
    "sharded": {("ConfigMap", "serving-exporter"), ("StatefulSet", "serving-exporter"),
                ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter-headless"),
                ("ServiceAccount", "serving-exporter"), ("Secret", "serving-exporter"),
                ("ServiceMonitor", "serving-exporter")},
    "sidecar": {("ConfigMap", "serving-exporter"), ("Secret", "serving-exporter"), ("PodMonitor", "serving-exporter")},
    "everything": {("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter"),
                   ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter"),
                   ("ServiceAccount", "serving-exporter"), ("Secret", "serving-exporter"),
                   ("NetworkPolicy", "serving-exporter"), ("ServiceMonitor", "serving-exporter"),
                   ("PrometheusRule", "serving-exporter"),
                   ("ConfigMap", "serving-exporter-dashboard-endpoint"),
                   ("ConfigMap", "serving-exporter-dashboard-overview")},
    "existing-secret": {("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter"),
                        ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter"),
                        ("ServiceAccount", "serving-exporter")},
    "web-config": {("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter"),
                   ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter"),
                   ("ServiceAccount", "serving-exporter"), ("ServiceMonitor", "serving-exporter")},
    # Several workspaces: each one's credentials from a Secret of its own, none rendered by the chart.
    "workspaces": {("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter"),
                   ("PodDisruptionBudget", "serving-exporter"), ("Service", "serving-exporter"),
                   ("ServiceAccount", "serving-exporter")},
    # No Databricks workspace: no Secret; the file_sd target groups in a ConfigMap of their own.
    "self-hosted": {("ConfigMap", "serving-exporter"), ("ConfigMap", "serving-exporter-file-sd"),
                    ("Deployment", "serving-exporter"), ("PodDisruptionBudget", "serving-exporter"),
                    ("Service", "serving-exporter"), ("ServiceAccount", "serving-exporter"),
                    ("NetworkPolicy", "serving-exporter"), ("ServiceMonitor", "serving-exporter")},
}


def test_every_ci_values_file_has_expectations():
    assert set(CASES) == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(CASES))
def test_renders_the_expected_resources(case: str):
    docs = resources(manifests(case))
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == EXPECTED[case]
    assert len(docs) == len(EXPECTED[case])
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_is_clean(case: str):
    helm = require_module("helm_python")
    report = helm.lint(str(CHART), values_of(case), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_packaged_chart_renders_the_same(tmp_path: Path):
    """`helm package` keeps everything the templates read (files/ included)."""
    helm = require_module("helm_python")
    archive = helm.package(str(CHART), destination=str(tmp_path))
    with helm.Chart.load(archive) as packaged:
        assert packaged.render(values_of("everything"), name=RELEASE, namespace=NAMESPACE) == manifests("everything")


# ---- schemas -------------------------------------------------------------------------------------

def kube_versions() -> list[str]:
    kv = require_module("kubernetes_validate.utils")
    minimum = re.match(r">=\s*(\d+\.\d+)", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]).group(1)
    return [minimum, kv.latest_version()]


def validate_core(doc: dict) -> None:
    kv = require_module("kubernetes_validate.utils")
    for version in kube_versions():
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} against Kubernetes {version}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            pytest.fail(exc.message)


@pytest.mark.parametrize("case", sorted(CASES))
def test_core_resources_validate_strictly(case: str):
    docs = [d for d in resources(manifests(case)) if d["kind"] not in OPERATOR_KINDS]
    assert docs
    for doc in docs:
        validate_core(doc)


def test_kubernetes_validate_is_strict():
    """The validator rejects an unknown field (so a passing chart has none) and a wrong type."""
    kv = require_module("kubernetes_validate.utils")
    deployment = next(d for d in resources(manifests("default")) if d["kind"] == "Deployment")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(bad, kube_versions()[-1], strict=True)


# A strict subset of the Prometheus Operator's monitoring.coreos.com/v1 API: the fields this chart
# (and the values users pass through) may set, with additionalProperties false.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_NAME = {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}
_RELABEL = {"type": "object", "additionalProperties": False, "properties": {
    "action": {"enum": [a for base in ("replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                                       "lowercase", "uppercase", "keepequal", "dropequal")
                        for a in (base, {"hashmod": "HashMod", "labelmap": "LabelMap", "labeldrop": "LabelDrop",
                                         "labelkeep": "LabelKeep", "keepequal": "KeepEqual",
                                         "dropequal": "DropEqual"}.get(base, base.capitalize()))]},
    "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
    "separator": {"type": "string"}, "targetLabel": {"type": "string"}, "regex": {"type": "string"},
    "modulus": {"type": "integer"}, "replacement": {"type": "string"}}}
_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": _LABELS, "matchExpressions": {"type": "array"}}}
_SECRET_KEY = {"type": "object", "additionalProperties": False, "required": ["key"], "properties": {
    "name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}}}
_SECRET_OR_CONFIG_MAP = {"type": "object", "additionalProperties": False, "properties": {
    "secret": _SECRET_KEY, "configMap": _SECRET_KEY}}
_TLS = {"type": "object", "additionalProperties": False, "properties": {  # SafeTLSConfig and the file paths
    "ca": _SECRET_OR_CONFIG_MAP, "cert": _SECRET_OR_CONFIG_MAP, "keySecret": _SECRET_KEY, "serverName": {"type": "string"},
    "insecureSkipVerify": {"type": "boolean"}, "caFile": {"type": "string"}, "certFile": {"type": "string"},
    "keyFile": {"type": "string"}, "minVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
    "maxVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]}}}
_BASIC_AUTH = {"type": "object", "additionalProperties": False, "properties": {
    "username": _SECRET_KEY, "password": _SECRET_KEY}}
_ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
    "port": {"type": "string"}, "path": {"type": "string"}, "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": _DURATION, "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
    "honorTimestamps": {"type": "boolean"}, "tlsConfig": _TLS, "basicAuth": _BASIC_AUTH, "params": {"type": "object"},
    "relabelings": {"type": "array", "items": _RELABEL}, "metricRelabelings": {"type": "array", "items": _RELABEL}}}
_METADATA = {"type": "object", "additionalProperties": False, "required": ["name", "namespace"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "namespace": {"type": "string"}, "labels": _LABELS, "annotations": _LABELS}}
_MONITOR_SPEC = {"jobLabel": {"type": "string"}, "selector": _SELECTOR,
                 "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                     "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}}}
_RULE = {"type": "object", "additionalProperties": False, "required": ["expr"],
         "oneOf": [{"required": ["alert"]}, {"required": ["record"]}], "properties": {
             "alert": {"type": "string"}, "record": {"type": "string"}, "expr": {"type": ["string", "integer"]},
             "for": _DURATION, "keep_firing_for": _DURATION, "labels": _LABELS, "annotations": _LABELS}}
OPERATOR_SCHEMAS = {
    kind: {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
           "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                          "metadata": _METADATA, "spec": spec}}
    for kind, spec in {
        "ServiceMonitor": {"type": "object", "additionalProperties": False, "required": ["endpoints", "selector"],
                           "properties": {**_MONITOR_SPEC, "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}},
        "PodMonitor": {"type": "object", "additionalProperties": False, "required": ["podMetricsEndpoints", "selector"],
                       "properties": {**_MONITOR_SPEC, "podMetricsEndpoints": {"type": "array", "minItems": 1,
                                                                               "items": _ENDPOINT}}},
        "PrometheusRule": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                  "required": ["name", "rules"], "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": _DURATION, "limit": {"type": "integer"},
                "labels": _LABELS, "rules": {"type": "array", "items": _RULE}}}}}},
    }.items()
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_resources_match_the_operator_api(case: str):
    jsonschema = require_module("jsonschema")
    for doc in resources(manifests(case)):
        if doc["kind"] in OPERATOR_KINDS:
            jsonschema.validate(doc, OPERATOR_SCHEMAS[doc["kind"]])


# ---- rules and dashboards: one source of truth -------------------------------------------------------

def load_sync() -> Any:
    spec = importlib.util.spec_from_file_location("helm_sync", REPO / "helm" / "sync.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_chart_copies_of_rules_and_dashboards_are_current():
    assert load_sync().differences() == [], "run `python helm/sync.py`"


def test_sync_copies_changes_additions_and_removals(tmp_path: Path):
    sync = load_sync()
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "tests").mkdir(parents=True)
    dst.mkdir()
    (src / "a.yml").write_text("groups: []\n")
    (src / "b.yml").write_text("groups: [] # b\n")
    (src / "c.test.yml").write_text("tests\n")
    (src / "tests" / "d.yml").write_text("tests\n")
    (dst / "a.yml").write_text("old\n")
    (dst / "gone.yml").write_text("removed upstream\n")
    sources = (sync.Source(src, ("*.yml",), dst),)
    problems = sync.differences(sources)
    assert any("a.yml: differs" in p for p in problems)
    assert any("b.yml: missing" in p for p in problems)
    assert any("gone.yml: no longer in" in p for p in problems)
    assert not any("c.test.yml" in p or "d.yml" in p for p in problems)
    sync.sync(sources)
    assert sync.differences(sources) == []
    assert sorted(p.name for p in dst.iterdir()) == ["a.yml", "b.yml"]
    assert (dst / "a.yml").read_text() == "groups: []\n"


def source_rule_groups() -> list[dict]:
    files = sorted(p for pattern in ("*.yml", "*.yaml") for p in (REPO / "alerts" / "prometheus").glob(pattern)
                   if not p.name.endswith((".test.yml", ".test.yaml")))
    assert files
    return [group for path in files for group in yaml.safe_load(path.read_text())["groups"]]


def test_prometheus_rule_is_the_rule_files_with_the_extra_labels():
    rule = one(resources(manifests("everything")), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    extra = values_of("everything")["prometheusRule"]["additionalRuleLabels"]
    expected = []
    for group in source_rule_groups():
        group = json.loads(json.dumps(group))
        for r in group["rules"]:
            if "alert" in r:
                r["labels"] = {**extra, **r.get("labels", {})}
        expected.append(group)
    assert rule["spec"]["groups"] == expected
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique across the rule files"


def test_prometheus_rule_drops_disabled_alerts_and_appends_groups():
    alerts = [r["alert"] for g in source_rule_groups() for r in g["rules"] if "alert" in r]
    dropped = alerts[0]
    extra_group = {"name": "site.rules", "rules": [{"record": "site:up:sum", "expr": "sum(up)"}]}
    docs = resources(render({"prometheusRule": {"enabled": True, "disabledAlerts": [dropped],
                                                "additionalGroups": [extra_group]}}))
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    kept = [r.get("alert") for g in groups for r in g["rules"]]
    assert dropped not in kept
    assert len([a for a in kept if a]) == len([a for a in alerts if a != dropped])
    assert groups[-1] == extra_group


@pytest.mark.integration
@pytest.mark.parametrize("case", ["everything"])
def test_promtool_checks_the_rendered_rules(case: str, tmp_path: Path):
    rule = one(resources(manifests(case)), "PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    result = subprocess.run([require_binary("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_dashboard_configmaps_are_the_dashboards():
    docs = [d for d in resources(manifests("everything")) if d["metadata"]["name"].startswith("serving-exporter-dashboard-")]
    sources = sorted((REPO / "dashboards" / "grafana").glob("*.json"))
    assert len(docs) == len(sources)
    for doc, source in zip(sorted(docs, key=lambda d: d["metadata"]["name"]), sources):
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert doc["metadata"]["annotations"] == {"grafana_folder": "Model serving"}
        assert doc["data"] == {source.name: source.read_text()}
        json.loads(doc["data"][source.name])


# ---- the pod: hardening, probes, ports ------------------------------------------------------------------

def all_pods(example: dict[str, str], vllm_example: dict[str, str]) -> list[tuple[str, dict, dict]]:
    found = [(case, pod, c) for case in CASES for pod, c in exporter_containers(resources(manifests(case)))]
    found += [("example", pod, c) for pod, c in exporter_containers(resources(example))]
    found += [("vllm-example", pod, c) for pod, c in exporter_containers(resources(vllm_example))]
    assert {case for case, _, _ in found} == {c for c in CASES if c != "sidecar"} | SIDECAR_EXAMPLES
    return found


def test_exporter_container_is_hardened(example: dict[str, str], vllm_example: dict[str, str]):
    for case, pod, container in all_pods(example, vllm_example):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, case
        assert sc["readOnlyRootFilesystem"] is True, case
        assert sc["allowPrivilegeEscalation"] is False, case
        assert sc["capabilities"] == {"drop": ["ALL"]}, case
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, case
        assert not sc.get("privileged"), case
        assert pod["automountServiceAccountToken"] is False, case
        # A Service named serving-exporter* in the namespace would inject SERVING_EXPORTER_SERVICE_HOST
        # & co., and the exporter refuses to start on unknown SERVING_EXPORTER_* variables.
        assert pod["enableServiceLinks"] is False, case
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), case
        assert all("hostPath" not in v for v in pod["volumes"]), case
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/tmp"]["name"] in {v["name"] for v in pod["volumes"] if "emptyDir" in v}, case
        assert mounts["/etc/serving-exporter"]["readOnly"] is True, case
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], case
        if case not in SIDECAR_EXAMPLES:  # an example's pod-level context is the other chart's
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}, case


def listen_of(container: dict) -> tuple[str, int]:
    args = build_parser().parse_args(["run", *container["args"]])
    host, _, port = args.listen.rpartition(":")
    return host, int(port)


def test_probes_and_ports(example: dict[str, str], vllm_example: dict[str, str]):
    for case, _pod, container in all_pods(example, vllm_example):
        (port,) = container["ports"]
        assert listen_of(container)[1] == port["containerPort"], case
        if case == "web-config":  # basic auth: the kubelet has no credentials, it checks the port
            assert container["livenessProbe"]["tcpSocket"] == container["readinessProbe"]["tcpSocket"] == {"port": "http"}
            assert "httpGet" not in container["livenessProbe"] and "httpGet" not in container["readinessProbe"]
            continue
        live = container["livenessProbe"]["httpGet"]
        assert live == {"path": "/healthz", "port": port["name"]}, case
        if case in SIDECAR_EXAMPLES:
            assert "readinessProbe" not in container, "a sidecar's readiness would gate the model server's pod"
            assert port["name"] == "se-metrics"
        else:
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}, case
            assert port["name"] == "http"


@pytest.mark.parametrize("case", [c for c in CASES if c != "sidecar"])
def test_service_and_service_monitor_reach_the_container(case: str):
    docs = resources(manifests(case))
    service = one(docs, "Service")
    workload = next(d for d in docs if d["kind"] in WORKLOAD_KINDS)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        # The exporter's label is serving_endpoint: nothing to drop or rename for the operator's `endpoint`.
        assert not [r for r in relabelings_of(endpoint) if touches_label(r, "endpoint")], endpoint


def test_pod_monitor_selects_the_sidecar_pods(example: dict[str, str]):
    docs = resources(example)
    monitor = one(docs, "PodMonitor")
    gateway = next(d for d in docs if d["kind"] == "Deployment")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "se-metrics"
    assert not [r for r in relabelings_of(endpoint) if touches_label(r, "endpoint")], endpoint


def relabelings_of(endpoint: dict) -> list[dict]:
    return [*(endpoint.get("relabelings") or []), *(endpoint.get("metricRelabelings") or [])]


def touches_label(relabeling: dict, label: str) -> bool:
    """Whether a relabeling reads, writes, drops, keeps or copies the label `label`."""
    action = relabeling.get("action", "replace").lower()
    if action in ("labeldrop", "labelmap"):
        return re.fullmatch(relabeling.get("regex", "(.*)"), label) is not None
    if action == "labelkeep":
        return re.fullmatch(relabeling.get("regex", "(.*)"), label) is None
    return label in relabeling.get("sourceLabels", []) or relabeling.get("targetLabel") == label


USER_RELABELINGS = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]
USER_METRIC_RELABELINGS = [{"sourceLabels": ["__name__"], "regex": "process_.*", "action": "drop"}]


@pytest.mark.parametrize("case,kind,key", [("everything", "ServiceMonitor", "endpoints"),
                                           ("sidecar", "PodMonitor", "podMetricsEndpoints")])
def test_user_relabelings_come_through_unchanged(case: str, kind: str, key: str):
    values = values_of(case)
    without = one(resources(manifests(case)), kind)["spec"][key][0]
    assert "relabelings" not in without  # the chart adds none of its own
    values["serviceMonitor"] = {**values["serviceMonitor"], "relabelings": USER_RELABELINGS,
                                "metricRelabelings": USER_METRIC_RELABELINGS}
    monitor = one(resources(render(values)), kind)
    require_module("jsonschema").validate(monitor, OPERATOR_SCHEMAS[kind])
    (endpoint,) = monitor["spec"][key]
    assert endpoint["relabelings"] == USER_RELABELINGS
    assert endpoint["metricRelabelings"] == USER_METRIC_RELABELINGS


def test_network_policy_allows_scrapes_dns_and_https():
    policy = one(resources(manifests("everything")), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == values_of("everything")["networkPolicy"]["ingressFrom"]
    ports = [p for rule in policy["egress"] for p in rule["ports"]]
    assert {"port": 53, "protocol": "UDP"} in ports and {"port": 443, "protocol": "TCP"} in ports


def test_web_config_is_mounted_from_its_secret_and_the_scrape_uses_tls_and_basic_auth():
    docs = resources(manifests("web-config"))
    values = values_of("web-config")
    (pod, container), = exporter_containers(docs)
    args = build_parser().parse_args(["run", *container["args"]])
    assert args.web_enable_lifecycle
    mount = next(m for m in container["volumeMounts"] if args.web_config_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True and args.web_config_file == mount["mountPath"] + "/web-config.yml"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume == {"name": mount["name"], "secret": {"secretName": "serving-exporter-web"}}
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == values["serviceMonitor"]["tlsConfig"]
    assert endpoint["basicAuth"] == values["serviceMonitor"]["basicAuth"]
    # Without a web configuration nothing of it is rendered.
    (_pod, plain), = exporter_containers(resources(manifests("default")))
    assert build_parser().parse_args(["run", *plain["args"]]).web_config_file is None
    assert "scheme" not in plain["livenessProbe"]["httpGet"]


def test_tls_without_authentication_keeps_http_probes_over_https():
    docs = resources(render({"webConfig": {"secret": "web", "tls": True}, "sidecar": {"enabled": False}}))
    (_pod, container), = exporter_containers(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTPS"}


def test_web_config_flags_without_the_secret_are_refused():
    with pytest.raises(Exception, match="set webConfig.secret too"):
        render({"webConfig": {"tls": True}})


# ---- the exporter reads what the chart writes ----------------------------------------------------------------

def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_in_pod(case: str, container: dict, config_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    hostname: str):
    """The settings `serving-exporter run` would start with in this pod (plain env vars set, HOSTNAME the pod's)."""
    path = tmp_path / f"{case}-config.yaml"
    path.write_text(config_text)
    for name, env in env_of(container).items():
        if "value" in env:
            monkeypatch.setenv(name, env["value"])
    monkeypatch.setenv("HOSTNAME", hostname)
    args = build_parser().parse_args(["run", *container["args"]])
    assert args.config == "/etc/serving-exporter/config.yaml"
    return load_settings(path, {"listen": args.listen, "shard_index": args.shard_index, "shard_count": args.shard_count})


@pytest.mark.parametrize("case", [c for c in CASES if c != "sidecar"])
def test_exporter_accepts_the_rendered_configuration(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    docs = resources(manifests(case))
    config = one([d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})], "ConfigMap")
    workload = next(d for d in docs if d["kind"] in WORKLOAD_KINDS)
    (_pod, container), = exporter_containers(docs)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/serving-exporter")
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    shards = workload["spec"]["replicas"] if workload["kind"] == "StatefulSet" else 1
    for index in range(shards):
        pod_name = f"{workload['metadata']['name']}-{index}" if shards > 1 else "serving-exporter-7d9f8c6b5-x2x4q"
        settings = settings_in_pod(case, container, config["data"]["config.yaml"], tmp_path, monkeypatch, pod_name)
        assert settings.shard() == (index, shards)
        assert settings.listen == "0.0.0.0:9877"
        for key, value in values_of(case).get("config", {}).items():
            if not isinstance(value, (dict, list)):
                assert getattr(settings, key) == value


def test_sharded_install_is_a_statefulset_of_one_pod_per_shard():
    docs = resources(manifests("sharded"))
    sts = one(docs, "StatefulSet")
    service = one(docs, "Service")
    assert sts["spec"]["replicas"] == values_of("sharded")["sharding"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (_pod, container), = exporter_containers(docs)
    env = env_of(container)
    assert env["SERVING_EXPORTER_SHARD_COUNT"] == {"name": "SERVING_EXPORTER_SHARD_COUNT", "value": "3"}
    assert "SERVING_EXPORTER_SHARD_INDEX" not in env  # from the pod name's ordinal
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_sidecar_example_polls_exactly_its_endpoint(example: dict[str, str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    docs = resources(example)
    config = one(docs, "ConfigMap")
    (pod, container), = exporter_containers(docs)
    assert [c["name"] for c in pod["containers"]] == ["gateway", "serving-exporter"]
    volume = next(v for v in pod["volumes"] if v["name"] == "serving-exporter-config")
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    settings = settings_in_pod("example", container, config["data"]["config.yaml"], tmp_path, monkeypatch, "gw-1")
    polled = [n for n in build_demo_workspace().names() if settings.endpoints.selects(EndpointInfo(name=n))]
    assert polled == ["fraud-scorer"]
    assert settings.shard() == (0, 1)
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            validate_core(doc)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_sidecar_values_render_no_workload_and_poll_one_endpoint(tmp_path: Path):
    docs = resources(manifests("sidecar"))
    assert not [d for d in docs if d["kind"] in WORKLOAD_KINDS | {"Service", "ServiceAccount"}]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    assert [n for n in build_demo_workspace().names() if settings.endpoints.selects(EndpointInfo(name=n))] == ["fraud-scorer"]


# ---- credentials -----------------------------------------------------------------------------------

def credential_values(values: dict) -> dict[str, str]:
    """Environment variable -> the credential value set in these values."""
    found = {}
    for (section, key), env in CREDENTIALS.items():
        value = (values.get(section) or {}).get(key)
        if value:
            found[env] = str(value)
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_credentials_are_only_in_the_secret(case: str):
    values = values_of(case)
    secrets = credential_values(values)
    docs = resources(manifests(case))
    secret_docs = [d for d in docs if d["kind"] == "Secret"]
    if not secrets or values.get("existingSecret"):
        assert secret_docs == []
    else:
        (secret,) = secret_docs
        keys = {env: (values.get("secretKeys") or {}).get(SECRET_KEY_OF[env], env) for env in secrets}
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == {keys[env]: value for env, value in secrets.items()}
    # No credential, plain or base64, anywhere else: not in a ConfigMap, an env value, an annotation
    # or NOTES.txt.
    elsewhere = "\n".join(text for name, text in manifests(case).items() if not name.endswith("templates/secret.yaml"))
    for value in secrets.values():
        assert value not in elsewhere
        assert base64.b64encode(value.encode()).decode() not in elsewhere


@pytest.mark.parametrize("case", sorted(CASES))
def test_credential_environment_comes_from_secret_references(case: str):
    values = values_of(case)
    docs = resources(manifests(case))
    for _pod, container in exporter_containers(docs):
        env = env_of(container)
        for name in CREDENTIALS.values():
            assert "value" not in env.get(name, {}), f"{case}: {name} as a plain value"
        refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})
                and not n.startswith("WORKSPACE_")}  # a workspaces entry's: test_workspaces_read_their_own_secrets
        if values.get("existingSecret"):
            keys = {**{env: env for env in CREDENTIALS.values()},
                    **{env: values["secretKeys"][SECRET_KEY_OF[env]] for env in CREDENTIALS.values()
                       if SECRET_KEY_OF[env] in values.get("secretKeys", {})}}
            assert refs == {n: {"name": values["existingSecret"], "key": keys[n], "optional": True}
                            for n in CREDENTIALS.values()}
            assert keys["DATABRICKS_TOKEN"] == "pat"
        else:
            assert refs == {n: {"name": "serving-exporter", "key": n} for n in credential_values(values)}
        assert env.get("DATABRICKS_HOST", {}).get("value") == (values.get("databricks") or {}).get("host")
        assert env.get("DD_SITE", {}).get("value") == (values.get("datadog") or {}).get("site")


def test_native_sidecar_option(example: dict[str, str], example_chart: Path):
    (_pod, container), = exporter_containers(resources(example))
    assert "restartPolicy" not in container
    native = render({"serving-exporter": {"sidecar": {"nativeSidecar": True}}}, chart=example_chart)
    (_pod, container), = exporter_containers(resources(native))
    assert container["restartPolicy"] == "Always"


def test_sidecar_template_requires_sidecar_mode(example_chart: Path):
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError, match="set sidecar.enabled: true"):
        render({"serving-exporter": {"sidecar": {"enabled": False}}}, chart=example_chart)


def test_example_reads_credentials_from_its_existing_secret(example: dict[str, str]):
    docs = resources(example)
    assert not [d for d in docs if d["kind"] == "Secret"]
    (_pod, container), = exporter_containers(docs)
    refs = {n: e["valueFrom"]["secretKeyRef"]["name"] for n, e in env_of(container).items() if "valueFrom" in e}
    assert set(refs) == set(CREDENTIALS.values()) and set(refs.values()) == {"fraud-scorer-databricks"}


def test_pods_restart_when_configuration_or_credentials_change():
    def annotations(values: dict) -> dict:
        return one(resources(render(values)), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    base = annotations({"databricks": {"token": "t1"}})
    assert annotations({"databricks": {"token": "t1"}, "config": {"log_format": "json"}})["checksum/config"] != base["checksum/config"]
    assert annotations({"databricks": {"token": "t2"}})["checksum/secret"] != base["checksum/secret"]


# ---- values that cannot work are refused at render time -------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"sharding": {"replicas": 3}, "replicaCount": 2}, "leave replicaCount at 1"),
    ({"sharding": {"replicas": 0}}, "sharding.replicas must be at least 1"),
    ({"sidecar": {"enabled": True}, "sharding": {"replicas": 2}}, "exclude each other"),
    ({"sidecar": {"enabled": True}, "serviceMonitor": {"enabled": True}}, "sidecar.podSelector is required"),
    ({"databricks": {"token": "x", "clientId": "y", "clientSecret": "z"}}, "set one"),
    ({"databricks": {"clientId": "y"}}, "go together"),
    ({"existingSecret": "creds", "datadog": {"apiKey": "k"}}, "leave the credential values empty"),
    ({"config": {"listen": "0.0.0.0:1234"}}, "use containerPort and listenHost"),
    ({"config": {"shard_count": 2}}, "use sharding.replicas"),
    ({"workspaces": [{"name": "East", "host": "https://e", "existingSecret": "s", "tokenKey": "t"}]}, "short slug"),
    ({"workspaces": [{"name": "east", "host": "https://e", "existingSecret": "s", "token": "dapi-1"}]},
     "credentials are never chart values"),
    ({"workspaces": [{"name": "east", "host": "https://e", "tokenKey": "t"}]}, "existingSecret is required"),
    ({"workspaces": [{"name": "east", "host": "https://e", "existingSecret": "s"}]}, "set tokenKey or clientIdKey"),
    ({"workspaces": [{"name": "east", "host": "https://e", "existingSecret": "s", "clientIdKey": "i"}]},
     "clientIdKey and clientSecretKey go together"),
    ({"workspaces": [{"name": "a-b", "host": "https://e", "existingSecret": "s", "tokenKey": "t"},
                     {"name": "a_b", "host": "https://f", "existingSecret": "s", "tokenKey": "t"}]}, "must be unique"),
    ({"workspaces": [{"name": "east", "host": "https://e", "existingSecret": "s", "tokenKey": "t"}],
      "databricks": {"host": "https://x"}}, "set one"),
])
def test_impossible_values_fail_to_render(values: dict, message: str):
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_ipv6_listen_address():
    (_pod, container), = exporter_containers(resources(render({"listenHost": "::"})))
    assert listen_of(container) == ("[::]", 9877)


# ---- self-hosted model servers ---------------------------------------------------------------------------

def rendered_settings(docs: list[dict], tmp_path: Path):
    """The settings the exporter starts with from the rendered configuration (the real loader: unknown
    keys rejected)."""
    config = one([d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})], "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(config["data"]["config.yaml"])
    return load_settings(path)


def mounted_files(docs: list[dict], pod: dict, container: dict, tmp_path: Path) -> dict[str, Path]:
    """Each ConfigMap volume the container mounts, written out as the kubelet would: mount path -> directory."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    found = {}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source:
            directory = tmp_path / mount["name"]
            directory.mkdir()
            for name, text in configmaps[source["name"]]["data"].items():
                (directory / name).write_text(text)
            found[mount["mountPath"]] = directory
    return found


def test_self_hosted_install_needs_no_databricks_workspace(tmp_path: Path):
    docs = resources(manifests("self-hosted"))
    values = values_of("self-hosted")
    (pod, container), = exporter_containers(docs)
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [e for e in env_of(container) if e.startswith(("DATABRICKS_", "DD_"))]
    settings = rendered_settings(docs, tmp_path)
    assert settings.databricks.host is None
    endpoints = {e.name: e for e in settings.self_hosted.endpoints}
    assert [e.model_dump(exclude_unset=True) for e in settings.self_hosted.endpoints] == values["selfHosted"]["endpoints"]
    # DNS mode: the headless Service's name, resolved by the real discovery.
    chat = endpoints["chat-assistant"]
    assert chat.dns.model_dump() == {"name": "vllm-headless.ml.svc.cluster.local", "type": "A", "port": 8000,
                                     "path": "/metrics", "scheme": "http"}
    resolved = Discovery(resolver=lambda name, rdtype, timeout: [("10.0.0.5", None), ("10.0.0.6", None)])
    assert resolved.targets(chat) == ["http://10.0.0.5:8000/metrics", "http://10.0.0.6:8000/metrics"]
    notes = next(text for name, text in manifests("self-hosted").items() if name.endswith("NOTES.txt"))
    assert "2 self-hosted endpoint(s): chat-assistant, ranker" in notes and "WARNING" not in notes


def test_self_hosted_credentials_are_mounted_files_and_file_sd_comes_from_its_config_map(tmp_path: Path):
    docs = resources(manifests("self-hosted"))
    (pod, container), = exporter_containers(docs)
    settings = rendered_settings(docs, tmp_path)
    endpoints = {e.name: e for e in settings.self_hosted.endpoints}
    # The token file lies in the mounted Secret, under the key's path; the Secret itself is not the chart's.
    token = endpoints["chat-assistant"].auth.bearer_token_file
    mount = next(m for m in container["volumeMounts"] if token.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": "vllm-metrics", "items": [{"key": "api-key", "path": "token"}]}
    assert token == f"{mount['mountPath']}/token"
    # file_sd: the ConfigMap's files, mounted where the endpoint's glob points, read by the real discovery.
    mounts = mounted_files(docs, pod, container, tmp_path)
    ranker = endpoints["ranker"]
    (pattern,) = ranker.file_sd
    directory, _, glob = pattern.rpartition("/")
    local = ranker.model_copy(update={"file_sd": [f"{mounts[directory]}/{glob}"]})
    (group,) = values_of("self-hosted")["selfHosted"]["fileSd"]["ranker.json"]
    assert Discovery().targets(local) == [f"http://{t}/metrics" for t in group["targets"]]
    # A changed target list reaches the pods without a restart: it is not in their checksum.
    changed = values_of("self-hosted")
    changed["selfHosted"]["fileSd"]["ranker.json"][0]["targets"].append("triton-2.triton.ml.svc.cluster.local:8002")
    def checksums(values: dict) -> dict:
        return one(resources(render(values)), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert checksums(changed) == checksums(values_of("self-hosted"))


def test_network_policy_lets_the_exporter_reach_the_metrics_ports():
    given = values_of("self-hosted")
    (rule,) = [r for r in one(resources(manifests("self-hosted")), "NetworkPolicy")["spec"]["egress"]
               if r.get("to") == given["networkPolicy"]["egress"]["metricsTo"]]
    assert rule["ports"] == [{"port": p, "protocol": "TCP"} for p in given["networkPolicy"]["egress"]["metricsPorts"]]
    # Without metricsPorts, the ports of dns.port and of the target URLs (443 for https without one).
    derived = one(resources(render({
        "networkPolicy": {"enabled": True},
        "selfHosted": {"endpoints": [
            {"name": "a", "dns": {"name": "a.ml.svc.cluster.local", "port": 8000}},
            {"name": "b", "targets": ["http://10.0.0.7:9000/metrics", "https://tgi.example.com/metrics"]}]}})),
        "NetworkPolicy")["spec"]["egress"]
    assert {"ports": [{"port": p, "protocol": "TCP"} for p in (8000, 9000, 443)]} in derived
    # Databricks only: no such rule.
    assert all(r.get("ports", [{}])[0].get("port") in (53, 443)
               for r in one(resources(manifests("everything")), "NetworkPolicy")["spec"]["egress"])


@pytest.mark.parametrize(("values", "message"), [
    ({"selfHosted": {"endpoints": [{"name": "a", "targets": ["http://h:1/metrics"], "auth": {"bearer_token": "s3cr3t"}}]}},
     "bearer_token is a secret written inline"),
    ({"selfHosted": {"endpoints": [{"name": "a", "targets": ["http://h:1/metrics"],
                                    "auth": {"basic_auth": {"username": "u", "password": "s3cr3t"}}}]}},
     "password is a secret written inline"),
    ({"selfHosted": {"endpoints": [{"name": "a", "targets": ["http://h:1/metrics"],
                                    "auth": {"bearer_token_file": "/var/run/token"}}]}},
     "auth.bearer_token_file: /var/run/token is in no directory the container mounts"),
    ({"selfHosted": {"endpoints": [{"name": "a", "file_sd": ["/etc/sd/*.json"]}]}},
     "file_sd: /etc/sd/*.json is in no directory the container mounts"),
    ({"selfHosted": {"endpoints": [{"name": "a", "targets": ["http://h:1/metrics"]}]},
      "config": {"self_hosted": {"endpoints": []}}}, "use selfHosted.endpoints"),
    ({"sidecar": {"enabled": True}, "selfHosted": {"endpoints": [{"name": "a", "targets": ["http://10.0.0.5:8000/metrics"]}]}},
     "on the loopback address"),
    ({"sidecar": {"enabled": True}, "selfHosted": {"endpoints": [{"name": "a", "dns": {"name": "x", "port": 1}}]}},
     "not dns or file_sd"),
    ({"sidecar": {"enabled": True}, "selfHosted": {"endpoints": [{"name": "a", "targets": ["http://127.0.0.1:1/metrics"]},
                                                                 {"name": "b", "targets": ["http://127.0.0.1:2/metrics"]}]}},
     "give one selfHosted.endpoints entry"),
    ({"networkPolicy": {"enabled": True},
      "selfHosted": {"endpoints": [{"name": "a", "dns": {"name": "_m._tcp.x", "type": "SRV"}}]}},
     "list them in networkPolicy.egress.metricsPorts"),
])
def test_self_hosted_values_that_cannot_work_fail_to_render(values: dict, message: str):
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError, match=re.escape(message)) as failure:
        render(values)
    assert "s3cr3t" not in str(failure.value)


def test_a_file_in_an_extra_volume_mount_is_accepted(tmp_path: Path):
    """A projected service-account token, say, mounted with extraVolumes/extraVolumeMounts."""
    values = {"selfHosted": {"endpoints": [{"name": "a", "targets": ["https://h:8443/metrics"],
                                            "auth": {"bearer_token_file": "/var/run/secrets/tokens/scrape"}}]},
              "extraVolumes": [{"name": "tokens", "projected": {"sources": [
                  {"serviceAccountToken": {"path": "scrape", "audience": "metrics", "expirationSeconds": 3600}}]}}],
              "extraVolumeMounts": [{"name": "tokens", "mountPath": "/var/run/secrets/tokens", "readOnly": True}]}
    docs = resources(render(values))
    assert rendered_settings(docs, tmp_path).self_hosted.endpoints[0].auth.bearer_token_file == "/var/run/secrets/tokens/scrape"


def test_vllm_example_validates_and_its_sidecar_scrapes_its_own_pod(vllm_example: dict[str, str], tmp_path: Path):
    docs = resources(vllm_example)
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        ("ConfigMap", "serving-exporter"), ("Deployment", "serving-exporter-vllm"),
        ("Service", "serving-exporter-vllm-headless"), ("PodMonitor", "serving-exporter")}
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            require_module("jsonschema").validate(doc, OPERATOR_SCHEMAS[doc["kind"]])
        else:
            validate_core(doc)
    (pod, exporter), = exporter_containers(docs)
    vllm = next(c for c in pod["containers"] if c["name"] == "vllm")
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    (api,) = vllm["ports"]
    args = vllm["args"]
    (endpoint,) = rendered_settings(docs, tmp_path).self_hosted.endpoints
    assert endpoint.kind == "vllm"
    assert endpoint.targets == [f"http://127.0.0.1:{api['containerPort']}/metrics"]
    assert endpoint.per_replica_concurrency == float(args[args.index("--max-num-seqs") + 1])
    assert str(api["containerPort"]) == args[args.index("--port") + 1]
    # The headless Service resolves to the vLLM pods (DNS mode for an exporter elsewhere).
    service = one(docs, "Service")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == api["name"]
    # The PodMonitor scrapes the sidecar's own port on these pods.
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (scrape,) = monitor["spec"]["podMetricsEndpoints"]
    assert scrape["port"] == exporter["ports"][0]["name"] != api["name"]


def values_of_example(example: Path) -> dict:
    return yaml.safe_load((example / "values.yaml").read_text())


def test_vllm_sidecar_configuration_polls_a_vllm_server_on_the_loopback(vllm_chart: Path, tmp_path: Path):
    """The rendered configuration, unchanged but for the port, drives the real self-hosted source against a
    local server answering a recorded vLLM body."""
    body = (REPO / "tests" / "fixtures" / "selfhosted" / "vllm_1.prom").read_text()
    with Replicas() as server:
        url = server.serve("/metrics", body)
        port = int(url.split(":")[2].split("/")[0])
        docs = resources(render({"vllm": {"port": port}, "serving-exporter": {"selfHosted": {"endpoints": [
            {**values_of_example(VLLM_EXAMPLE)["serving-exporter"]["selfHosted"]["endpoints"][0],
             "targets": [url]}]}}}, chart=vllm_chart))
        settings = rendered_settings(docs, tmp_path)
        source = SelfHostedSource(settings.self_hosted)
        try:
            (info,) = source.list_endpoints()
            observation = source.fetch(info.name)
            described = source.describe(info.name)
        finally:
            source.close()
    assert info.name == "chat-assistant" and info.platform == "self-hosted"
    assert [(r.target, r.up) for r in observation.replicas] == [(url, True)]
    assert described.server == "vllm"
    assert observation.endpoint.queue_depth == 1.0  # vllm:num_requests_waiting in the recorded body


@pytest.mark.parametrize(("values", "message"), [
    ({"vllm": {"port": 8001}}, 'targets must be ["http://127.0.0.1:8001/metrics"] (vllm.port)'),
    ({"vllm": {"maxNumSeqs": 128}}, "per_replica_concurrency must equal vllm.maxNumSeqs (128)"),
])
def test_vllm_example_refuses_a_sidecar_configuration_for_another_server(vllm_chart: Path, values: dict, message: str):
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values, chart=vllm_chart)


# ---- documentation of the values ------------------------------------------------------------------------

def test_every_value_has_a_comment():
    """Every key in values.yaml has a comment: on the line just above it or at the end of its line."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("#") or not re.match(r"^\s*[A-Za-z0-9_.\-/]+:(\s|$)", line):
            continue
        previous = lines[number - 2] if number > 1 else ""
        if " #" not in line and not previous.lstrip().startswith("#"):
            missing.append(f"values.yaml:{number}: {line.strip()}")
    assert missing == []


def test_dockerfile_matches_the_chart():
    dockerfile = (REPO / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", base), base
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1]
    assert user == (str(values["securityContext"]["runAsUser"]), str(values["securityContext"]["runAsGroup"]))
    assert re.search(rf"^EXPOSE {values['containerPort']}$", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["serving-exporter", "run"\]$', dockerfile, re.M)
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version


def test_workspaces_read_their_own_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each workspaces entry: its credentials as environment variables from its own Secret, named in the rendered
    config.workspaces, which the exporter accepts and resolves (a source per workspace)."""
    docs = resources(manifests("workspaces"))
    (_pod, container), = exporter_containers(docs)
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env_of(container).items() if n.startswith("WORKSPACE_")}
    assert refs == {"WORKSPACE_PROD_EU_TOKEN": {"name": "databricks-prod-eu", "key": "token"},
                    "WORKSPACE_PROD_US_CLIENT_ID": {"name": "databricks-prod-us", "key": "client-id"},
                    "WORKSPACE_PROD_US_CLIENT_SECRET": {"name": "databricks-prod-us", "key": "client-secret"}}
    config = one([d for d in docs if d["kind"] == "ConfigMap"], "ConfigMap")["data"]["config.yaml"]
    settings = settings_in_pod("workspaces", container, config, tmp_path, monkeypatch, "serving-exporter-0")
    assert [(w.name, w.host, w.token_env, w.client_id_env, w.client_secret_env) for w in settings.workspaces] == [
        ("prod-eu", "https://adb-1234567890123456.7.azuredatabricks.net", "WORKSPACE_PROD_EU_TOKEN", None, None),
        ("prod-us", "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", None, "WORKSPACE_PROD_US_CLIENT_ID",
         "WORKSPACE_PROD_US_CLIENT_SECRET")]
    environ = {"WORKSPACE_PROD_EU_TOKEN": "dapi-eu", "WORKSPACE_PROD_US_CLIENT_ID": "id",
               "WORKSPACE_PROD_US_CLIENT_SECRET": "secret"}
    assert settings.workspaces[0].auth(environ)["token"] == "dapi-eu"
    assert settings.workspaces[1].auth(environ)["client_secret"] == "secret"
