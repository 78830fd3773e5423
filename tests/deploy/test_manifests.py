"""The Kubernetes manifests: valid against the schemas, hardened, and consistent with the service's settings.

Each check runs on every way users deploy it: the kustomize base, both overlays, and the Helm chart
with its defaults and its production example values.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from consumer.mappings.load import load_mappings
from consumer.service.health import HEALTH_PATH, READY_PATH
from consumer.settings import KafkaSettings, ServiceSettings, TwilioSettings, load_settings
from tests.deploy.render import (
    DEPLOY,
    Manifest,
    SchemaMissing,
    component,
    consumer_container,
    container_env,
    load_documents,
    of_kind,
    one,
    render,
    validate,
    workload,
)

KUSTOMIZE = [
    "kustomize:base",
    "kustomize:overlays/dev",
    "kustomize:overlays/prod",
    "kustomize:overlays/prod-persistent",
]
HELM = ["helm:defaults", "helm:ci/prod-values.yaml", "helm:ci/persistent-values.yaml"]
#: Sources whose ledger state is on a claim per replica (a StatefulSet).
PERSISTENT = ["kustomize:overlays/prod-persistent", "helm:ci/persistent-values.yaml"]
SOURCES = KUSTOMIZE + HELM
#: Sources that ship KEDA and Prometheus Operator resources (dev targets a bare cluster).
WITH_OPERATORS = [s for s in SOURCES if s != "kustomize:overlays/dev"]


def _secret_env_names() -> set[str]:
    """Environment variables of every SecretStr setting: these must only ever come from a Secret."""
    # librdkafka pass-through settings that are secrets (KAFKA_CLIENT_<name with _ for .>).
    names = {"KAFKA_CLIENT_SASL_PASSWORD", "KAFKA_CLIENT_SSL_KEY_PASSWORD", "KAFKA_CLIENT_SSL_KEY_PEM",
             "KAFKA_CLIENT_SASL_OAUTHBEARER_CLIENT_SECRET"}  # fmt: skip
    for cls, prefix in (
        (TwilioSettings, "TWILIO_"),
        (KafkaSettings, "KAFKA_"),
        (ServiceSettings, "CONSUMER_"),
    ):
        for field, info in cls.model_fields.items():
            if "SecretStr" in repr(info.annotation):
                names.add(f"{prefix}{field.upper()}")
    return names


SECRET_ENV = _secret_env_names()


def _unknown_settings(env: dict[str, str]) -> set[str]:
    """Variables in a settings prefix that no settings field reads: typos, silently ignored otherwise."""
    known = {
        f"{prefix}{field.upper()}"
        for cls, prefix in (
            (TwilioSettings, "TWILIO_"),
            (KafkaSettings, "KAFKA_"),
            (ServiceSettings, "CONSUMER_"),
        )
        for field in cls.model_fields
    }
    return {k for k in env if k not in known and not k.startswith("KAFKA_CLIENT_")}


def _pod_spec(docs: tuple[Manifest, ...]) -> Manifest:
    spec: Manifest = workload(docs)["spec"]["template"]["spec"]
    return spec


def _named_port(container: Manifest, port: int | str) -> int:
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in by_name, f"port {port!r} is not a named port of the container ({sorted(by_name)})"
    return int(by_name[port])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ---- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_every_rendered_manifest_validates_against_its_kubernetes_or_crd_schema(source: str) -> None:
    docs = render(source)
    assert docs, f"{source} rendered nothing"
    problems = [str(p) for doc in docs for p in validate(doc)]
    assert not problems, "\n".join(problems)


RAW_FILES = sorted(
    p
    for p in [*(DEPLOY / "k8s" / "base").glob("*.yaml"), DEPLOY / "prometheus" / "rules.yaml"]
    if p.name not in {"kustomization.yaml", "mappings.yaml"}
)


@pytest.mark.parametrize("path", RAW_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_base_file_is_a_valid_manifest_on_its_own(path: Path) -> None:
    docs = load_documents(path.read_text(encoding="utf-8"))
    assert docs, f"{path} holds no manifest"
    problems = [str(p) for doc in docs for p in validate(doc)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("ScaledObject", lambda d: d["spec"].update(minReplicas=1), "minReplicas"),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervl="5s"), "intervl"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][-1].update({"for": "5 min"}), "5 min"),
        ("Deployment", lambda d: consumer_container(d)["securityContext"].update(readOnlyRootFileSystem=True),
         "readOnlyRootFileSystem"),
        ("PodDisruptionBudget", lambda d: d["spec"].update(maxUnavailable=[1]), "maxUnavailable"),
    ],
)  # fmt: skip
def test_the_validator_rejects_a_misspelt_or_mistyped_field(kind: str, mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(one(render("kustomize:overlays/prod"), kind))
    mutate(doc)
    problems = [str(p) for p in validate(doc)]
    assert problems, f"a broken {kind} passed validation"
    assert any(expected in p for p in problems), problems


def test_a_kind_without_any_schema_is_reported_not_silently_accepted() -> None:
    with pytest.raises(SchemaMissing, match="Widget"):
        list(validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}))


@pytest.mark.parametrize("source", WITH_OPERATORS)
def test_operator_sources_ship_the_scaled_object_service_monitor_and_alert_rules(source: str) -> None:
    kinds = {d["kind"] for d in render(source)}
    expected = {"Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget",
                "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ScaledObject",
                "StatefulSet" if source in PERSISTENT else "Deployment"}  # fmt: skip
    assert expected <= kinds, f"{source} lacks {sorted(expected - kinds)}"


def test_the_dev_overlay_needs_no_operator_and_pins_one_replica() -> None:
    docs = render("kustomize:overlays/dev")
    groups = {d["apiVersion"].split("/")[0] for d in docs if "/" in d["apiVersion"]}
    assert not groups & {"keda.sh", "monitoring.coreos.com"}
    assert workload(docs)["spec"]["replicas"] == 1


# ---- the pod: hardening, probes, drain ------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_the_pod_runs_non_root_with_no_capabilities_a_seccomp_profile_and_a_read_only_root(
    source: str,
) -> None:
    pod = _pod_spec(render(source))
    container = consumer_container(workload(render(source)))
    ctx = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] > 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not ctx["capabilities"].get("add")
    assert ctx.get("privileged", False) is False
    for scope in (pod["securityContext"], ctx):
        assert scope["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    # A read-only root still needs a writable /tmp for anything that uses tempfile.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("source", SOURCES)
def test_the_container_sets_requests_and_limits(source: str) -> None:
    resources = consumer_container(workload(render(source)))["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"], f"no {key} request"
    assert "memory" in resources["limits"], "no memory limit"


@pytest.mark.parametrize("source", SOURCES)
def test_probes_hit_the_services_health_and_readiness_paths_on_its_metrics_port(source: str) -> None:
    docs = render(source)
    container = consumer_container(workload(docs))
    port = ServiceSettings().metrics_port
    expected = {"livenessProbe": HEALTH_PATH, "readinessProbe": READY_PATH, "startupProbe": HEALTH_PATH}
    for probe, path in expected.items():
        if probe == "startupProbe" and probe not in container:
            continue
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}, the service serves {path}"
        assert _named_port(container, get["port"]) == port, f"{probe} port is not the metrics port {port}"
    # The port the service listens on is whatever CONSUMER_METRICS_PORT says; it must be the same one.
    env = container_env(docs)
    assert int(env.get("CONSUMER_METRICS_PORT", port)) == port


@pytest.mark.parametrize("source", SOURCES)
def test_termination_grace_outlasts_the_sigterm_drain(source: str) -> None:
    docs = render(source)
    drain = float(container_env(docs).get("CONSUMER_DRAIN_GRACE_S", ServiceSettings().drain_grace_s))
    grace = _pod_spec(docs)["terminationGracePeriodSeconds"]
    # The drain is followed by a final commit and the dead-letter producer's flush.
    assert grace >= drain + 10, (
        f"terminationGracePeriodSeconds {grace} leaves no time after a {drain} s drain"
    )


@pytest.mark.parametrize("source", SOURCES)
def test_service_links_are_off_so_service_names_cannot_inject_settings(source: str) -> None:
    assert _pod_spec(render(source))["enableServiceLinks"] is False


@pytest.mark.parametrize("source", SOURCES)
def test_the_container_runs_a_real_sub_command_through_the_image_entrypoint(source: str) -> None:
    from consumer.cli import COMMANDS

    container = consumer_container(workload(render(source)))
    assert "command" not in container, "keep the image's ENTRYPOINT; pass the sub-command in args"
    assert container["args"][0] == "run"
    assert "run" in COMMANDS


# ---- settings, secrets, mappings ---------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_no_config_map_holds_a_secret_setting(source: str) -> None:
    for cm in of_kind(render(source), "ConfigMap"):
        leaked = SECRET_ENV & set(cm.get("data", {}))
        assert not leaked, f"ConfigMap {cm['metadata']['name']} holds {sorted(leaked)}: move them to a Secret"


@pytest.mark.parametrize("source", SOURCES)
def test_credentials_reach_the_pod_only_through_secret_references(source: str) -> None:
    docs = render(source)
    container = consumer_container(workload(docs))
    secrets = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
    assert any("twilio" in name for name in secrets), "no Secret reference for the Twilio credentials"
    for var in container.get("env", []):
        assert var["name"] not in SECRET_ENV or "secretKeyRef" in var.get("valueFrom", {}), var["name"]
    assert not of_kind(docs, "Secret"), (
        "Secrets are created out of band, never shipped with real or fake values"
    )


@pytest.mark.parametrize("source", SOURCES)
def test_the_rendered_environment_is_accepted_by_the_services_settings(source: str) -> None:
    env = container_env(render(source))
    unknown = _unknown_settings(env)
    assert not unknown, f"settings the service does not read (typo?): {sorted(unknown)}"
    secrets = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_API_KEY_SID": "SK" + "0" * 32,
               "TWILIO_API_KEY_SECRET": "not-a-secret"}  # fmt: skip
    settings = load_settings(environ={**env, **secrets})
    assert settings.service.mappings == Path(env["CONSUMER_MAPPINGS"])


@pytest.mark.parametrize("source", SOURCES)
def test_the_mapping_config_map_is_mounted_where_the_service_reads_it_and_validates(
    source: str, tmp_path: Path
) -> None:
    docs = render(source)
    pod = _pod_spec(docs)
    container = consumer_container(workload(docs))
    mappings = Path(container_env(docs)["CONSUMER_MAPPINGS"])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == mappings.parent)
    assert mount.get("readOnly") is True
    assert "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])
    assert mappings.name in cm["data"], f"ConfigMap {cm['metadata']['name']} has no key {mappings.name}"
    local = tmp_path / mappings.name
    local.write_text(cm["data"][mappings.name], encoding="utf-8")
    assert load_mappings(local), "the shipped mapping file defines no mapping"


# ---- Service, ServiceMonitor, PDB, NetworkPolicy --------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_every_selector_selects_the_consumer_pods(source: str) -> None:
    docs = render(source)
    labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert _matches(one(docs, "Service")["spec"]["selector"], labels)
    assert _matches(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert _matches(one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    for monitor in (m for m in of_kind(docs, "ServiceMonitor") if component(m) == "consumer"):
        assert _matches(
            monitor["spec"]["selector"]["matchLabels"], one(docs, "Service")["metadata"]["labels"]
        )


@pytest.mark.parametrize("source", SOURCES)
def test_the_metrics_port_is_the_same_in_the_service_monitor_and_network_policy(source: str) -> None:
    docs = render(source)
    port = ServiceSettings().metrics_port
    container = consumer_container(workload(docs))
    service = one(docs, "Service")
    (service_port,) = service["spec"]["ports"]
    assert _named_port(container, service_port["targetPort"]) == port
    assert service["spec"]["publishNotReadyAddresses"] is True, "unready pods must still be scraped"
    for monitor in (m for m in of_kind(docs, "ServiceMonitor") if component(m) == "consumer"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service_port["name"]
        assert endpoint["path"] == "/metrics"
    policy = one(docs, "NetworkPolicy")
    ingress_ports = {
        _named_port(container, p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]
    }
    assert ingress_ports == {port}


@pytest.mark.parametrize("source", SOURCES)
def test_the_network_policy_lets_the_consumer_reach_dns_kafka_and_twilio(source: str) -> None:
    docs = render(source)
    policy = one(docs, "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    allowed: set[int] = set()
    for rule in policy["spec"]["egress"]:
        for p in rule["ports"]:
            allowed.update(range(p["port"], p.get("endPort", p["port"]) + 1))
    kafka_ports = {
        int(s.rsplit(":", 1)[1]) for s in container_env(docs)["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    }
    for port, what in [(53, "DNS"), (443, "Twilio"), *((p, "Kafka") for p in kafka_ports)]:
        assert port in allowed, f"egress to {what} port {port} is blocked"


# ---- KEDA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", WITH_OPERATORS)
def test_keda_never_scales_past_the_partition_count_and_reads_the_consumers_own_settings(source: str) -> None:
    docs = render(source)
    scaled = one(docs, "ScaledObject")
    spec = scaled["spec"]
    partitions = int(scaled["metadata"]["annotations"]["kafka-twilio/topic-partitions"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert spec["scaleTargetRef"]["name"] == workload(docs)["metadata"]["name"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == workload(docs)["kind"]
    assert "replicas" not in workload(docs)["spec"], "KEDA owns the replica count"
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta.get("allowIdleConsumers", "false") == "false"
    env = container_env(docs)
    for key in ("bootstrapServersFromEnv", "consumerGroupFromEnv", "topicFromEnv"):
        assert meta[key] in env, f"KEDA reads {meta[key]}, which the consumer's environment does not set"
    if "topicFromEnv" in meta:
        assert "," not in env[meta["topicFromEnv"]], "KEDA's kafka scaler takes one topic"
    assert meta["offsetResetPolicy"] == env.get("KAFKA_AUTO_OFFSET_RESET", KafkaSettings().auto_offset_reset)


SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


@pytest.mark.parametrize("source", WITH_OPERATORS)
def test_keda_authenticates_to_kafka_like_the_consumer_does(source: str) -> None:
    docs = render(source)
    (trigger,) = one(docs, "ScaledObject")["spec"]["triggers"]
    meta = trigger["metadata"]
    env = container_env(docs)
    protocol = env.get("KAFKA_CLIENT_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    assert meta.get("tls", "disable") == ("enable" if protocol.endswith("SSL") else "disable")
    if protocol.startswith("SASL"):
        assert meta.get("sasl") == SASL[env["KAFKA_CLIENT_SASL_MECHANISM"].upper()]
        auth = trigger["authenticationRef"]["name"]
        trigger_auth = next(
            d for d in of_kind(docs, "TriggerAuthentication") if d["metadata"]["name"] == auth
        )
        refs = {r["parameter"]: r for r in trigger_auth["spec"]["secretTargetRef"]}
        assert refs["username"]["key"] == "KAFKA_CLIENT_SASL_USERNAME"
        assert refs["password"]["key"] == "KAFKA_CLIENT_SASL_PASSWORD"
        container = consumer_container(workload(docs))
        consumer_secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert {r["name"] for r in refs.values()} <= consumer_secrets, (
            "KEDA and the consumer use different Secrets"
        )
    else:
        assert "sasl" not in meta


@pytest.mark.parametrize(
    ("env", "unknown"),
    [
        ({"KAFKA_TOPICS": "a", "CONSUMER_DRAIN_GRACE_S": "25"}, set()),
        ({"KAFKA_TOPIC": "a"}, {"KAFKA_TOPIC"}),
        ({"CONSUMER_METRICS_PORTS": "9108"}, {"CONSUMER_METRICS_PORTS"}),
        ({"KAFKA_CLIENT_SECURITY_PROTOCOL": "SASL_SSL"}, set()),
    ],
)
def test_a_misspelt_setting_in_the_environment_is_reported(env: dict[str, str], unknown: set[str]) -> None:
    assert _unknown_settings(env) == unknown


def test_base_settings_file_names_only_real_settings() -> None:
    text = (DEPLOY / "k8s" / "base" / "settings.env").read_text(encoding="utf-8")
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert keys
    assert all(re.fullmatch(r"(KAFKA|CONSUMER|TWILIO)_[A-Z0-9_]+", k) for k in keys), keys
    assert not SECRET_ENV & set(keys)
    assert not _unknown_settings(dict.fromkeys(keys, ""))


@pytest.mark.parametrize("source", SOURCES)
def test_the_state_directory_is_a_volume_of_its_own_an_empty_dir_or_a_claim_per_replica(source: str) -> None:
    docs = render(source)
    pod = workload(docs)
    state_dir = container_env(docs)["CONSUMER_STATE_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in consumer_container(pod)["volumeMounts"]}
    assert state_dir in mounts, f"CONSUMER_STATE_DIR={state_dir} is not a mounted volume"
    name = mounts[state_dir]
    volumes = {v["name"]: v for v in pod["spec"]["template"]["spec"]["volumes"]}
    claims = {c["metadata"]["name"] for c in pod["spec"].get("volumeClaimTemplates", [])}
    if source in PERSISTENT:
        assert pod["kind"] == "StatefulSet"
        assert name in claims, "a claim per replica"
        assert name not in volumes
        assert pod["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    else:
        assert pod["kind"] == "Deployment"
        assert "emptyDir" in volumes[name]
        assert volumes[name]["emptyDir"].get("medium") != "Memory", "the store must not count as memory"
