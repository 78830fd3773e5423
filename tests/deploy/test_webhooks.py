"""The webhook receiver's manifests: its own Deployment, Service, Ingress, PDB and NetworkPolicy, in
kustomize (base and overlays) and the Helm chart alike."""

from __future__ import annotations

import pytest

from consumer.cli import COMMANDS
from consumer.settings import WebhookSettings, load_settings
from consumer.webhooks.receiver import INBOUND_PATH, STATUS_PATH
from tests.deploy.render import Manifest, consumer_container, of_kind, one, render

SOURCES = ["kustomize:base", "kustomize:overlays/dev", "kustomize:overlays/prod", "helm:defaults",
           "helm:ci/prod-values.yaml"]  # fmt: skip


def receiver(docs: tuple[Manifest, ...]) -> Manifest:
    return one(docs, "Deployment", of="webhooks")


def env_of(docs: tuple[Manifest, ...]) -> dict[str, str]:
    container = consumer_container(receiver(docs))
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    env.update({v["name"]: v["value"] for v in container.get("env", []) if "value" in v})
    return env


def port_of(container: Manifest, name: str | int) -> int:
    return name if isinstance(name, int) else next(p["containerPort"] for p in container["ports"]
                                                   if p["name"] == name)  # fmt: skip


@pytest.mark.parametrize("source", SOURCES)
def test_the_receiver_runs_the_webhooks_command_hardened_with_probes_on_its_port(source: str) -> None:
    docs = render(source)
    container = consumer_container(receiver(docs))
    assert container["args"] == ["webhooks"]
    assert "webhooks" in COMMANDS
    port = int(env_of(docs).get("WEBHOOKS_PORT", WebhookSettings().port))
    assert port_of(container, container["ports"][0]["name"]) == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_of(container, container[probe]["httpGet"]["port"]) == port
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert receiver(docs)["spec"]["replicas"] >= 2, "one replica leaves callbacks unanswered in a drain"


@pytest.mark.parametrize("source", SOURCES)
def test_the_receivers_settings_load_and_its_public_url_matches_the_consumers_callback(source: str) -> None:
    docs = render(source)
    env = env_of(docs)
    settings = load_settings(environ={**env, "TWILIO_AUTH_TOKEN": "not-a-secret"})
    callback = settings.service.status_callback_url
    assert callback == settings.webhooks.public_url.rstrip("/") + STATUS_PATH, (
        "the consumer must send Twilio the URL the receiver checks signatures against"
    )
    secrets = [
        s["secretRef"]["name"] for s in consumer_container(receiver(docs))["envFrom"] if "secretRef" in s
    ]
    assert any("twilio" in name for name in secrets), "TWILIO_AUTH_TOKEN must come from the Twilio Secret"


@pytest.mark.parametrize("source", SOURCES)
def test_the_service_ingress_pdb_and_policy_select_the_receiver_and_expose_only_twilios_paths(
    source: str,
) -> None:
    docs = render(source)
    pod_labels = receiver(docs)["spec"]["template"]["metadata"]["labels"]
    container = consumer_container(receiver(docs))
    service = one(docs, "Service", of="webhooks")
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    pdb = one(docs, "PodDisruptionBudget", of="webhooks")
    assert pdb["spec"]["minAvailable"] >= 1
    assert all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    (rule,) = one(docs, "Ingress", of="webhooks")["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert STATUS_PATH.startswith(path["path"])
    assert INBOUND_PATH.startswith(path["path"])
    assert path["path"] != "/", "only Twilio's paths: /metrics stays inside the cluster"
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    assert env_of(docs)["CONSUMER_STATUS_CALLBACK_URL"].split("/")[2] == rule["host"]
    policy = one(docs, "NetworkPolicy", of="webhooks")
    assert all(pod_labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    ingress_ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
    assert ingress_ports == {port_of(container, "http")}
    egress_ports = {p["port"] for r in policy["spec"]["egress"] for p in r["ports"]}
    assert 443 not in egress_ports, "the receiver never calls out to Twilio"
    assert 53 in egress_ports


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "kustomize:overlays/dev"])
def test_prometheus_scrapes_the_receiver_through_its_own_service_monitor(source: str) -> None:
    docs = render(source)
    monitor = one(docs, "ServiceMonitor", of="webhooks")
    service = one(docs, "Service", of="webhooks")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
