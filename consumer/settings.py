"""Settings, read from the environment (optionally a .env-style file) and validated once at start-up.

Nothing here is read at import time: `load_settings()` is the one place the environment is read (a
test passes its own mapping instead), and every problem is reported at once, naming the variable and
what to put in it. The models are plain pydantic models rather than pydantic-settings classes so no
second, implicit read of `os.environ` can leak into a run configured otherwise.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from consumer.errors import SettingsError

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")


class TwilioSettings(BaseModel):
    """How to reach Twilio. Env prefix `TWILIO_`."""

    model_config = ConfigDict(extra="ignore")  # KAFKA_PORT etc. belong to other tools

    account_sid: str = Field(default="", description="Account SID (AC + 32 hex); used in every URL path.")
    api_key_sid: str = Field(default="", description="API Key SID (SK…); the Basic-auth user. Preferred.")
    api_key_secret: SecretStr | None = Field(default=None, description="API Key secret.")
    auth_token: SecretStr | None = Field(default=None, description="Auth Token, used when no API key is set.")
    auth_token_secondary: SecretStr | None = Field(
        default=None,
        description="The secondary Auth Token during a rotation: webhooks signed with it pass too.",
    )
    region: str = Field(
        default="", description="Twilio region, e.g. ie1 or au1 (credentials are per region)."
    )
    edge: str = Field(default="", description="Twilio edge location, e.g. dublin or sydney.")
    base_url: str = Field(default="", description="Override of the API base URL (the simulator, a proxy).")
    content_base_url: str = Field(default="", description="Override of the Content API base URL.")
    messaging_base_url: str = Field(default="", description="Override of the Messaging API base URL.")
    timeout_s: float = Field(default=15.0, gt=0, description="Per-request timeout, seconds.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=512, ge=1, description="HTTP connection pool size.")
    account_concurrency: int = Field(
        default=0,
        ge=0,
        description="Requests the Twilio account may have in flight, for all replicas together (0: bounded "
        "by CONSUMER_MAX_IN_FLIGHT alone); each replica takes its partition share.",
    )

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, v: str) -> str:
        if v and not ACCOUNT_SID.match(v):
            raise ValueError(
                "must be AC followed by 32 hex characters (find it on the Twilio Console home page)"
            )
        return v

    @field_validator("api_key_sid")
    @classmethod
    def _api_key_sid(cls, v: str) -> str:
        if v and not API_KEY_SID.match(v):
            raise ValueError("must be SK followed by 32 hex characters (Console > API keys & tokens)")
        return v

    @model_validator(mode="after")
    def _credentials(self) -> TwilioSettings:
        if self.api_key_sid and self.api_key_secret is None:
            raise ValueError("TWILIO_API_KEY_SID is set but TWILIO_API_KEY_SECRET is not: set both")
        if (self.edge and not self.region) or (self.region and not self.edge):
            raise ValueError("set both TWILIO_REGION and TWILIO_EDGE (e.g. ie1 and dublin), or neither")
        return self

    @property
    def configured(self) -> bool:
        """True when real credentials are present (otherwise the demo uses the simulator)."""
        return bool(self.account_sid and (self.api_key_secret or self.auth_token))

    @property
    def api_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.region:
            return f"https://api.{self.edge}.{self.region}.twilio.com"
        return "https://api.twilio.com"

    def basic_auth(self) -> tuple[str, str]:
        """Return (user, password) for HTTP Basic auth: the API key when set, else the Auth Token."""
        if self.api_key_sid and self.api_key_secret is not None:
            return self.api_key_sid, self.api_key_secret.get_secret_value()
        if self.auth_token is not None:
            return self.account_sid, self.auth_token.get_secret_value()
        raise SettingsError(
            "no Twilio credentials: set TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN)"
        )


class KafkaSettings(BaseModel):
    """How to reach Kafka. Env prefix `KAFKA_`; `KAFKA_CLIENT_<NAME>` passes any librdkafka setting
    through (`KAFKA_CLIENT_SECURITY_PROTOCOL=SASL_SSL` becomes `security.protocol`)."""

    model_config = ConfigDict(extra="ignore")  # KAFKA_PORT etc. belong to other tools

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    group_id: str = Field(default="kafka-twilio", description="Consumer group; replicas share it.")
    topics: list[str] = Field(default=["segment-events"], description="Topics to consume (JSON list or CSV).")
    dead_letter_topic: str = Field(default="kafka-twilio.dead-letter")
    dedup_topic: str = Field(default="kafka-twilio.sent", description="Compacted changelog of sent messages.")
    status_topic: str = Field(default="kafka-twilio.status", description="Status events from the webhooks.")
    suppression_topic: str = Field(
        default="kafka-twilio.suppressions",
        description="Compacted suppression list (STOP, permanent failures).",
    )
    schema_registry_url: str = Field(default="", description="Confluent-compatible registry URL, if any.")
    schema_registry_user: str = ""
    schema_registry_password: SecretStr | None = None
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts."
    )
    group_instance_id: str = Field(
        default="",
        description="Static group membership: a replica restarting with the same id gets its partitions back "
        "at once instead of after the session timeout. Unique per replica (the pod name).",
    )
    session_timeout_ms: int = Field(
        default=30_000, ge=6_000, le=300_000, description="How long a silent member keeps its partitions."
    )
    client: dict[str, str] = Field(default_factory=dict, description="Extra librdkafka settings.")

    @field_validator("topics", mode="before")
    @classmethod
    def _csv(cls, v: object) -> object:
        if isinstance(v, str) and v.lstrip().startswith("["):
            return _json(v)
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    def client_config(self) -> dict[str, str]:
        """librdkafka settings shared by every client (bootstrap plus pass-through security settings)."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.client}


class ServiceSettings(BaseModel):
    """How the consumer behaves. Env prefix `CONSUMER_`."""

    model_config = ConfigDict(extra="ignore")  # KAFKA_PORT etc. belong to other tools

    mappings: Path = Field(default=Path("mappings.yaml"), description="Mapping file (YAML).")
    schemas_dir: Path = Field(default=Path("schemas"), description="Local Avro schemas (.avsc).")
    event_encoding: Literal["auto", "confluent", "single-object", "schemaless", "json"] = "auto"
    default_region: str = Field(default="US", description="Region for phone numbers without a country code.")
    phone_validation: Literal["possible", "strict"] = Field(
        default="possible",
        description="possible: send numbers of a possible length, Twilio judges them (21211 is a skip); "
        "strict: also require phonenumbers' metadata to know the number as valid.",
    )
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104  the pod's metrics port must be reachable by Prometheus
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Twilio requests in flight, for all replicas together: each takes its partition share.",
    )
    max_buffered: int = Field(
        default=10_000, ge=1, description="Unfinished records before partitions pause (~5 KB each)."
    )
    max_retries: int = Field(default=6, ge=0)
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_cap_s: float = Field(default=60.0, gt=0)
    drain_grace_s: float = Field(default=25.0, gt=0, description="SIGTERM/rebalance drain time limit.")
    reconcile_delay_s: float = Field(
        default=2.0, ge=0, description="Wait after an unanswered send before asking Twilio's list for it."
    )
    commit_interval_s: float = Field(default=1.0, gt=0)
    delay_objective_s: float = Field(
        default=1.0,
        gt=0,
        description="p99 of event → Twilio's answer above which the KafkaTwilioSendDelayHigh alert fires.",
    )
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="How often lag is measured and an unreachable broker is asked again."
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where the ledger's state store lives (RocksDB): kept across restarts, a restart reads "
        "only the changelog's tail. Unset: a temporary directory, rebuilt from the changelog at each start.",
    )
    sender_rates: dict[str, float] = Field(
        default_factory=dict, description='Per-sender rate overrides, JSON: {"+14155550100": 3, "MG…": 50}.'
    )
    rate_unit: Literal["messages", "segments"] = "segments"
    status_callback_url: str = Field(
        default="",
        description="StatusCallback for mappings without their own (the webhook receiver's /twilio/status).",
    )
    suppression_codes: list[int] = Field(
        default=[21610, 30005, 30006], description="Twilio error codes that put a recipient on the list."
    )
    log_level: str = "INFO"

    @field_validator("state_dir", mode="before")
    @classmethod
    def _unset_when_empty(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("sender_rates", mode="before")
    @classmethod
    def _json_object(cls, v: object) -> object:
        return _json(v) if isinstance(v, str) else v

    @field_validator("suppression_codes", mode="before")
    @classmethod
    def _codes(cls, v: object) -> object:
        if isinstance(v, str):
            return [c.strip() for c in v.split(",") if c.strip()]
        return v

    @field_validator("status_callback_url")
    @classmethod
    def _callback_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/_]+(/|$)", v):
            raise ValueError("must be an http(s) URL whose host has no '_' (Twilio refuses others)")
        return v


class WebhookSettings(BaseModel):
    """The webhook receiver (`kafka-twilio webhooks`). Env prefix `WEBHOOKS_`."""

    model_config = ConfigDict(extra="ignore")

    host: str = "0.0.0.0"  # noqa: S104  Twilio (through the Ingress) must reach it
    port: int = Field(default=9110, ge=0, le=65535)
    public_url: str = Field(
        default="",
        description="The scheme and host Twilio posts to (https://hooks.example.com): Twilio signs that URL, "
        "not the one the pod sees behind the Ingress. Empty: the request's own.",
    )
    ack_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for Kafka's acknowledgement.")


class Settings(BaseModel):
    """All settings of the service."""

    twilio: TwilioSettings
    kafka: KafkaSettings
    service: ServiceSettings
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)


def _client_passthrough(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    prefix = "KAFKA_CLIENT_"
    return {k[len(prefix) :].lower().replace("_", "."): v for k, v in environ.items() if k.startswith(prefix)}


_PARTS: dict[str, tuple[type[BaseModel], str]] = {
    "twilio": (TwilioSettings, "TWILIO_"),
    "kafka": (KafkaSettings, "KAFKA_"),
    "service": (ServiceSettings, "CONSUMER_"),
    "webhooks": (WebhookSettings, "WEBHOOKS_"),
}


def _environment(env_file: Path | None, environ: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    if env_file is not None:
        env = {**_read_env_file(env_file), **env}
    return env


def _part(name: str, env: dict[str, str], problems: list[str]) -> BaseModel | None:
    cls, prefix = _PARTS[name]
    values: dict[str, object] = {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}
    if name == "kafka":
        values = {k: v for k, v in values.items() if not k.startswith("client_")}
        values["client"] = _client_passthrough(env)
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = "_".join(str(x) for x in err["loc"]).upper()
            var = f"{prefix}{loc}" if loc else prefix.rstrip("_") + " settings"
            problems.append(f"{var}: {err['msg']}")
        return None


def load_settings(env_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise one SettingsError listing every problem."""
    env = _environment(env_file, environ)
    problems: list[str] = []
    parts = {name: _part(name, env, problems) for name in _PARTS}
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return Settings(**parts)  # type: ignore[arg-type]


def load_kafka_settings(environ: dict[str, str] | None = None) -> KafkaSettings:
    """Only the KAFKA_* settings, for the commands that talk to Kafka alone (produce, replay)."""
    problems: list[str] = []
    kafka = _part("kafka", _environment(None, environ), problems)
    if problems or not isinstance(kafka, KafkaSettings):
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return kafka


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at character {exc.pos})") from exc


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from exc
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("'\"")
    return out
