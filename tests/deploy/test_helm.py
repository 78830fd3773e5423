"""The Helm chart: lints, renders the same resources as the kustomize base, and refuses broken values.

The shared checks (schemas, hardening, probes, KEDA, secrets) run on the chart's renders in
test_manifests.py; this file holds what is specific to the chart.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.deploy.render import DEPLOY, HELM_CHART, config_map, one, render, tool


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("helm")), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("values", [None, "ci/prod-values.yaml"])
def test_the_chart_lints_clean(values: str | None) -> None:
    args = ["lint", "--strict", str(HELM_CHART), "--kube-version", "1.33.0"]
    if values:
        args += ["--values", str(HELM_CHART / values)]
    done = helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def _names(source: str) -> set[tuple[str, str]]:
    # kustomize appends a 10-character content hash to generated ConfigMaps; compare the stable part.
    out = set()
    for doc in render(source):
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap" and source.startswith("kustomize:"):
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        out.add((doc["kind"], name))
    return out


@pytest.mark.parametrize(
    ("helm_source", "kustomize_source"),
    [("helm:defaults", "kustomize:base"), ("helm:ci/prod-values.yaml", "kustomize:overlays/prod")],
)
def test_the_chart_renders_the_same_resources_as_kustomize(helm_source: str, kustomize_source: str) -> None:
    kustomize = {n for n in _names(kustomize_source) if n[0] != "Namespace"}
    assert _names(helm_source) == kustomize


def test_the_chart_ships_the_checked_alert_rules_and_dashboard_unchanged() -> None:
    docs = render("helm:defaults")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text(encoding="utf-8"))
    assert one(docs, "PrometheusRule")["spec"] == rules["spec"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    (content,) = config_map(docs, "kafka-twilio-dashboard")["data"].values()
    assert json.loads(content) == dashboard


def test_operators_can_be_switched_off_for_a_bare_cluster() -> None:
    off = "keda.enabled=false,serviceMonitor.enabled=false,prometheusRule.enabled=false"
    done = helm("template", "kafka-twilio", str(HELM_CHART), "--kube-version", "1.33.0", "--set", off)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ScaledObject", "ServiceMonitor", "PrometheusRule", "TriggerAuthentication"}
    assert one(docs, "Deployment")["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ("keda.maxReplicas=30", "keda.maxReplicas exceeds keda.topicPartitions"),
        ("terminationGracePeriodSeconds=30", "terminationGracePeriodSeconds must exceed"),
        ("consumer.drainGraceSeconds=40", "terminationGracePeriodSeconds must exceed"),
        ("kafka.securityProtocol=SASL_SSL,kafka.saslMechanism=PLAIN", "set kafka.existingSecret"),
        (
            "kafka.securityProtocol=SASL_SSL,kafka.existingSecret=s,kafka.saslMechanism=GSSAPI",
            "kafka.saslMechanism",
        ),
    ],
)
def test_the_chart_refuses_values_that_would_deploy_something_broken(sets: str, message: str) -> None:
    done = helm("template", "kafka-twilio", str(HELM_CHART), "--kube-version", "1.33.0", "--set", sets)
    assert done.returncode != 0, f"--set {sets} rendered"
    assert message in done.stderr


def test_every_value_is_documented_with_a_comment_or_is_self_explanatory() -> None:
    text = (HELM_CHART / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    documented = text.count("# --")
    assert documented >= 20, "describe values with `# --` comments (helm-docs style)"
    assert set(values) >= {"image", "kafka", "twilio", "consumer", "keda", "serviceMonitor", "prometheusRule"}
