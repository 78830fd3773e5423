"""The container image, checked by reading deploy/Dockerfile (no Docker engine here): its entrypoint,
port, health check, user and build inputs must match the service and the Kubernetes manifests."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from consumer.cli import COMMANDS
from consumer.service.health import HEALTH_PATH
from consumer.settings import ServiceSettings
from tests.deploy.render import DEPLOY, ROOT, consumer_container, container_env, one, render

DOCKERFILE = DEPLOY / "Dockerfile"
LOCK = DEPLOY / "requirements.lock"


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """JSON (exec) form arguments; fail on shell form, which would run under /bin/sh -c."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must use the JSON exec form"
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped; stage counts FROM lines."""
    out: list[Instruction] = []
    stage = -1
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
        logical = ""
    assert not logical, "the Dockerfile ends inside a continued line"
    return out


@cache
def instructions() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


def final(keyword: str) -> list[Instruction]:
    last = max(i.stage for i in instructions())
    return [i for i in instructions() if i.stage == last and i.keyword == keyword]


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for inst in final("ENV"):
        for token in shlex.split(inst.args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


@cache
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_parser_joins_continuations_and_tracks_stages() -> None:
    parsed = parse_dockerfile("FROM a AS b\n# c\nRUN x \\\n  # inside\n  y\nFROM b\nUSER 1\n")
    assert [(i.stage, i.keyword, i.args) for i in parsed] == [
        (0, "FROM", "a AS b"), (0, "RUN", "x  y"), (1, "FROM", "b"), (1, "USER", "1")
    ]  # fmt: skip


def test_the_image_is_multi_stage_on_a_slim_python_matching_requires_python() -> None:
    froms = [i for i in instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    args = dict(
        a.args.split("=", 1) for a in instructions() if a.keyword == "ARG" and a.stage == -1 and "=" in a.args
    )
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", base), base
    minor = int(base.split(".")[1].split("-")[0])
    requires = str(pyproject()["project"]["requires-python"])  # type: ignore[index]
    assert Version(f"3.{minor}") in __import__("packaging.specifiers").specifiers.SpecifierSet(requires)


def test_the_entrypoint_is_the_projects_console_script_and_cmd_a_real_sub_command() -> None:
    (entrypoint,) = final("ENTRYPOINT")
    (cmd,) = final("CMD")
    program, *rest = entrypoint.exec_form()
    scripts = pyproject()["project"]["scripts"]  # type: ignore[index]
    assert Path(program).name in scripts, f"{program} is not a [project.scripts] entry ({sorted(scripts)})"
    assert scripts[Path(program).name] == "consumer.cli:main"
    # The venv the build stage creates is the one the runtime stage copies and the entrypoint runs.
    venv = str(Path(program).parent.parent)
    assert any(i.keyword == "RUN" and f"venv {venv}" in i.args for i in instructions())
    assert any(i.keyword == "COPY" and f"{venv} {venv}" in i.args for i in final("COPY"))
    assert not rest
    sub_command = cmd.exec_form()
    assert sub_command[0] in COMMANDS
    assert sub_command[0] == "run"


def test_the_manifests_run_the_same_sub_command_as_the_image() -> None:
    (cmd,) = final("CMD")
    for source in ("kustomize:base", "helm:defaults"):
        assert consumer_container(one(render(source), "Deployment"))["args"] == cmd.exec_form()


def test_the_image_exposes_and_health_checks_the_services_metrics_port_and_health_path() -> None:
    port = ServiceSettings().metrics_port
    (expose,) = final("EXPOSE")
    assert expose.args.split("/")[0] == str(port)
    assert final_env()["CONSUMER_METRICS_PORT"] == str(port)
    (check,) = final("HEALTHCHECK")
    options, _, command = check.args.partition("CMD ")
    program = json.loads(command)
    script = program[-1]
    assert program[0].startswith(str(Path(final("ENTRYPOINT")[0].exec_form()[0]).parent)), (
        "use the image's python"
    )
    assert f"'{HEALTH_PATH}'" in script
    assert f"'CONSUMER_METRICS_PORT', '{port}'" in script, "the health check falls back to another port"
    assert "--timeout=" in options


def test_the_image_runs_as_the_non_root_user_the_pod_security_context_names() -> None:
    (user,) = final("USER")
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), "numeric uid, so runAsNonRoot can check it"
    assert int(uid) > 0
    assert any(f"--uid {uid}" in i.args for i in final("RUN"))
    for source in ("kustomize:base", "helm:defaults"):
        ctx = consumer_container(one(render(source), "Deployment"))["securityContext"]
        assert (str(ctx["runAsUser"]), str(ctx["runAsGroup"])) == (uid, gid or uid)


def test_the_image_works_with_a_read_only_root_filesystem() -> None:
    # No bytecode written at run time: compiled during the build, and never attempted afterwards.
    assert final_env()["PYTHONDONTWRITEBYTECODE"] == "1"
    assert any(i.keyword == "RUN" and "compileall" in i.args for i in instructions())
    # HOME points at the writable emptyDir, not at a directory in the image.
    assert final_env()["HOME"] == "/tmp"
    pod = one(render("kustomize:base"), "Deployment")["spec"]["template"]["spec"]
    mounts = {
        m["mountPath"] for m in consumer_container({"spec": {"template": {"spec": pod}}})["volumeMounts"]
    }
    assert "/tmp" in mounts


def test_the_mapping_path_baked_into_the_image_is_where_kubernetes_mounts_it() -> None:
    image_path = Path(final_env()["CONSUMER_MAPPINGS"])
    docs = render("kustomize:base")
    container = consumer_container(one(docs, "Deployment"))
    assert Path(container_env(docs)["CONSUMER_MAPPINGS"]) == image_path
    assert str(image_path.parent) in {m["mountPath"] for m in container["volumeMounts"]}


def test_the_image_carries_the_oci_labels() -> None:
    labels = " ".join(i.args for i in final("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    license_ = pyproject()["project"]["license"]["text"]  # type: ignore[index]
    assert f'org.opencontainers.image.licenses="{license_}"' in labels


# ---- build inputs --------------------------------------------------------------------------------


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern decides; `!` re-includes. Enough of it for our paths."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if (
            fnmatch.fnmatch(path, pat)
            or path.startswith(pat + "/")
            or (pat.startswith("**/") and fnmatch.fnmatch(path.rsplit("/", 1)[-1], pat[3:]))
        ):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    ("path", "excluded"),
    [("pyproject.toml", False), ("consumer/cli.py", False), ("consumer/__pycache__", True),
     (".venv", True), ("tests/unit", True), ("deploy/requirements.lock", False), ("deploy/Dockerfile", True)],
)  # fmt: skip
def test_the_dockerignore_keeps_only_what_the_build_copies(path: str, excluded: bool) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignore_excludes(path, patterns) is excluded


def test_every_file_the_build_copies_exists_and_survives_the_dockerignore() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for i in instructions()
        if i.keyword == "COPY" and "--from=" not in i.args
        for src in i.args.split()[:-1]
        if not src.startswith("--")
    ]
    assert sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY {src}: not in the project"
        assert not dockerignore_excludes(src.rstrip("/"), patterns), f"COPY {src}: excluded by .dockerignore"
    assert list((ROOT / "schemas").glob("*.avsc")), "the image ships schemas/*.avsc; there are none"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from deploy/requirements.lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        req = Requirement(spec.split(";")[0].strip())
        (pin,) = req.specifier
        assert pin.operator == "==", f"{req.name} is not pinned exactly"
        out[req.name.lower().replace("_", "-")] = (pin.version, [o.strip() for o in options])
    return out


def test_every_locked_package_is_pinned_with_hashes() -> None:
    pins = locked()
    assert len(pins) > 20
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
        assert all(h.startswith("sha256:") for h in hashes), f"{name}: {hashes}"


def test_the_lock_satisfies_every_runtime_dependency_in_pyproject() -> None:
    pins = locked()
    stale = []
    for dep in pyproject()["project"]["dependencies"]:  # type: ignore[index]
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        if name not in pins:
            stale.append(f"{req.name} is not locked")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            stale.append(f"{req.name}=={pins[name][0]} does not satisfy {req.specifier}")
    assert not stale, "deploy/requirements.lock is stale; run `bash deploy/lock.sh`:\n" + "\n".join(stale)
    assert "setuptools" in pins, "the build backend is locked too (the image builds with --no-index)"


def test_the_settings_baked_into_the_image_are_real_settings_the_service_accepts() -> None:
    from consumer.settings import KafkaSettings, TwilioSettings, load_settings

    fields = {
        f"{prefix}{name.upper()}"
        for cls, prefix in (
            (TwilioSettings, "TWILIO_"),
            (KafkaSettings, "KAFKA_"),
            (ServiceSettings, "CONSUMER_"),
        )
        for name in cls.model_fields
    }
    baked = {k: v for k, v in final_env().items() if k.split("_", 1)[0] in {"TWILIO", "KAFKA", "CONSUMER"}}
    assert baked
    assert set(baked) <= fields, f"not settings: {sorted(set(baked) - fields)}"
    settings = load_settings(environ=baked)
    assert settings.service.metrics_port == ServiceSettings().metrics_port
