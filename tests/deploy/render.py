"""Render and validate the deployment files: kustomize and helm output, Kubernetes and CRD schemas, PromQL.

The Go-built tools (kustomize, helm, promqlcheck) come from `bash deploy/tools.sh`, which caches them in
.cache/deploy-tools/bin. Locally a missing tool skips the tests that need it; under CI it fails them.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRDS = Path(__file__).resolve().parent / "crds"
TOOLS_BIN = Path(os.environ.get("KAFKA_TWILIO_TOOLS_DIR", ROOT / ".cache" / "deploy-tools")) / "bin"
HELM_CHART = DEPLOY / "helm" / "kafka-twilio"

#: Oldest Kubernetes minor the manifests support (PodDisruptionBudget.unhealthyPodEvictionPolicy is GA
#: in 1.31) and the newest kubernetes-validate knows; every built-in object is checked against both.
K8S_VERSIONS = ("1.31", "1.37")

Manifest = dict[str, Any]


def tool(name: str) -> Path:
    """Path of a tool built by deploy/tools.sh; skip (locally) or fail (CI) when it is missing."""
    path = TOOLS_BIN / name
    if not path.is_file():
        message = f"{name} not found in {TOOLS_BIN}: run `bash deploy/tools.sh` (needs Go 1.24+)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(args: list[str | Path], stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def load_documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def kustomize_build(directory: str) -> tuple[Manifest, ...]:
    """`kustomize build deploy/k8s/<directory>`, parsed."""
    return tuple(load_documents(_run([tool("kustomize"), "build", DEPLOY / "k8s" / directory])))


@functools.cache
def helm_template(values_file: str | None = None) -> tuple[Manifest, ...]:
    """`helm template` of the chart with its defaults, or with one of its example values files."""
    args: list[str | Path] = [
        tool("helm"),
        "template",
        "kafka-twilio",
        HELM_CHART,
        "--namespace",
        "kafka-twilio",
        "--kube-version",
        "1.33.0",
    ]
    if values_file is not None:
        args += ["--values", HELM_CHART / values_file]
    return tuple(load_documents(_run(args)))


def render(source: str) -> tuple[Manifest, ...]:
    """Manifests of a named source: `kustomize:<dir>` or `helm:<values file or 'defaults'>`."""
    kind, _, name = source.partition(":")
    if kind == "kustomize":
        return kustomize_build(name)
    return helm_template(None if name == "defaults" else name)


def promql_check(expressions: list[str]) -> list[dict[str, Any]]:
    """Parse with Prometheus' own parser: one {"error": ...} or {"metrics": [...]} per expression."""
    out: list[dict[str, Any]] = json.loads(_run([tool("promqlcheck")], stdin=json.dumps(expressions)))
    return out


# ---- schemas ------------------------------------------------------------------------------------


class SchemaMissing(AssertionError):
    """Neither Kubernetes nor a vendored CRD has a schema for this apiVersion and kind."""


def _strict(schema: Any) -> Any:
    """Refuse unknown fields the way `kubectl apply --validate=strict` does: the API server prunes them
    silently, which hides typos such as `minReplicas` for `minReplicaCount`."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, from the CRDs vendored in tests/deploy/crds."""
    out: dict[tuple[str, str], Any] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in load_documents(path.read_text(encoding="utf-8")):
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = dict(version["schema"]["openAPIV3Schema"])
                # The API server fills in metadata's schema; the CRD says only `type: object`.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                out[f"{spec['group']}/{version['name']}", spec["names"]["kind"]] = _strict(schema)
    return out


@dataclass(frozen=True)
class Problem:
    kind: str
    name: str
    version: str
    path: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.kind}/{self.name} (Kubernetes {self.version}) at {self.path or '<root>'}: {self.message}"
        )


def validate(doc: Manifest) -> Iterator[Problem]:
    """Every schema problem of one manifest; raise SchemaMissing when no schema is known for it."""
    kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
    crd = crd_schemas().get((doc.get("apiVersion", ""), kind))
    if crd is not None:
        for err in jsonschema.Draft7Validator(crd).iter_errors(doc):
            yield Problem(kind, name, "CRD", ".".join(map(str, err.absolute_path)), err.message)
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise SchemaMissing(f"no schema for {doc.get('apiVersion')} {kind}: {exc.message}") from exc
        except kubernetes_validate.ValidationError as err:
            yield Problem(kind, name, version, ".".join(map(str, err.path)), err.message)


# ---- queries over rendered manifests --------------------------------------------------------------


def of_kind(docs: tuple[Manifest, ...] | list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d.get("kind") == kind]


def component(doc: Manifest) -> str:
    """The `app.kubernetes.io/component` label: consumer, webhooks, or "" for shared resources."""
    return str(doc.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component", ""))


def one(docs: tuple[Manifest, ...] | list[Manifest], kind: str, of: str = "consumer") -> Manifest:
    """The one `kind` of a component: the consumer's unless `of` names another (webhooks). Resources
    without a component label (the dashboard, the rules) belong to every component."""
    found = [d for d in of_kind(docs, kind) if component(d) in (of, "")]
    assert len(found) == 1, f"expected one {kind} of the {of}, found {len(found)}"
    return found[0]


WORKLOADS = ("Deployment", "StatefulSet")


def workload(docs: tuple[Manifest, ...] | list[Manifest]) -> Manifest:
    """The consumer's workload: a Deployment, or a StatefulSet when its state store is persistent."""
    found = [d for d in docs if d.get("kind") in WORKLOADS and component(d) in ("consumer", "")]
    assert len(found) == 1, f"expected one Deployment or StatefulSet of the consumer, found {len(found)}"
    return found[0]


def config_map(docs: tuple[Manifest, ...], prefix: str) -> Manifest:
    """The ConfigMap whose name starts with `prefix` (kustomize appends a content hash)."""
    found = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, (
        f"expected one ConfigMap named {prefix}*, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def consumer_container(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the consumer runs alone in its pod"
    container: Manifest = containers[0]
    return container


def container_env(docs: tuple[Manifest, ...]) -> dict[str, str]:
    """The consumer's environment as Kubernetes builds it: envFrom ConfigMaps, then `env` literals
    (Secrets are left out: they hold no settings the manifests can check)."""
    deployment = workload(docs)
    container = consumer_container(deployment)
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env
