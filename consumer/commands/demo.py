"""`kafka-twilio demo`: the whole path on sample events, on this machine, then a summary.

Starts what is missing (the local Kafka broker unless KAFKA_BOOTSTRAP_SERVERS answers; the Twilio
simulator unless real Twilio credentials are set; with `--encoding confluent`, or DEMO_ENCODING=confluent,
the local Schema Registry unless KAFKA_SCHEMA_REGISTRY_URL answers), produces the sample events to a
fresh topic, and a shop's own order events (not Segment-shaped, read through a `sources:` entry) to a
second one, runs the consumer until it is idle, prints what happened, and stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from consumer.commands.demo_shop import produce_shop_orders
from consumer.logs import configure_logging, mask_text
from consumer.metrics import Metrics
from consumer.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _reachable(bootstrap: str) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=3)
    except Exception:  # noqa: BLE001  anything means "not there"
        return False
    return True


@contextlib.contextmanager
def kafka(bootstrap: str) -> Iterator[str]:
    """Yield a reachable broker, starting the project's local one (and stopping it after) if needed."""
    if _reachable(bootstrap):
        yield bootstrap
        return
    script = ROOT / "deploy" / "kafka" / "local-kafka.sh"
    if not script.exists():
        raise SystemExit(f"no Kafka broker at {bootstrap} and no local broker script at {script}")
    print(f"demo: no broker at {bootstrap}; starting the local Apache Kafka broker (first run fetches jars)")
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(script), "up"], check=True, env=env)  # noqa: S603,S607
    try:
        yield "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")
    finally:
        subprocess.run(["bash", str(script), "down"], check=False, env=env)  # noqa: S603,S607


def _registry_answers(url: str) -> bool:
    import urllib.request

    try:
        # The URL is the user's registry setting or our loopback one: http(s) is what they hold.
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=3) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def schema_registry(url: str) -> Iterator[str]:
    """Yield a Schema Registry URL that answers: `url` when set, else the project's local registry
    (started here and stopped after, when it is not running)."""
    if url:
        if not _registry_answers(url):
            raise SystemExit(f"demo: no Schema Registry answers at {url} (KAFKA_SCHEMA_REGISTRY_URL)")
        yield url
        return
    script = ROOT / "deploy" / "registry" / "local-registry.sh"
    local = subprocess.run(["bash", str(script), "url"], check=True, capture_output=True, text=True)  # noqa: S603,S607
    local_url = local.stdout.strip()
    if _registry_answers(local_url):
        yield local_url
        return
    print("demo: starting the local Schema Registry (Apicurio; the first run fetches it with Maven)")
    subprocess.run(["bash", str(script), "up"], check=True)  # noqa: S603,S607
    try:
        yield local_url
    finally:
        subprocess.run(["bash", str(script), "down"], check=False)  # noqa: S603,S607


@contextlib.contextmanager
def twilio(real: bool) -> Iterator[dict[str, str]]:
    """Yield TWILIO_* settings: the real account when configured, else a simulator on loopback."""
    if real:
        print("demo: real Twilio credentials found: messages WILL be sent")
        yield {}
        return
    from consumer.simulator import SimulatorConfig, running_simulator

    # The WhatsApp message comes back undelivered (30003): the summary shows both kinds of report.
    config = SimulatorConfig(latency_ms=50, latency_jitter_ms=20,
                             undelivered_to={"whatsapp:+14155550177": 30003})  # fmt: skip
    # The Content Templates the example mappings use, so the start-up template check passes.
    extra = json.loads((ROOT / "examples" / "content-templates.json").read_text())
    config = config.replace(
        templates=[*config.templates, *({**t, "account_sid": config.account_sid} for t in extra)]
    )
    with running_simulator(config) as sim:
        print(f"demo: Twilio simulator on {sim.base_url} (validates requests against the official spec)")
        yield {
            "TWILIO_BASE_URL": sim.base_url,
            "TWILIO_CONTENT_BASE_URL": sim.base_url,
            "TWILIO_MESSAGING_BASE_URL": sim.base_url,
            "TWILIO_ACCOUNT_SID": sim.account_sid,
            "TWILIO_API_KEY_SID": sim.api_key_sid,
            "TWILIO_API_KEY_SECRET": sim.api_key_secret,
            "TWILIO_AUTH_TOKEN": sim.auth_token,  # signs the simulator's callbacks: the receiver checks them
        }
        # After the consumer ran: show what reached "Twilio".
        _print_received(sim.messages())


def _move_appointments_ahead(events: list[dict[str, Any]], now: datetime) -> None:
    """The samples carry fixed dates; an appointment must lie 15 min to 35 days ahead for its
    SendAt reminder to be valid, so the demo moves it to three days from now."""
    when = (
        (now + timedelta(days=3))
        .replace(hour=15, minute=30, second=0, microsecond=0)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    for event in events:
        scheduled = (event.get("properties") or {}).get("journey_context", {}).get("appointment_scheduled")
        if isinstance(scheduled, dict) and "appointment_at" in (scheduled.get("properties") or {}):
            scheduled["properties"]["appointment_at"] = when


def _print_received(received: list[dict[str, Any]]) -> None:
    print(f"\nThe simulator accepted {len(received)} message(s):")
    for m in received[:20]:
        body = m.get("Body") or (f"ContentSid={m.get('ContentSid')}" if m.get("ContentSid") else "")
        print(f"  to {mask_text(str(m.get('To', '')))}: {mask_text(str(body))[:70]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kafka-twilio demo", description=__doc__)
    parser.add_argument("--mappings", type=Path, default=ROOT / "examples" / "mappings.yaml")
    parser.add_argument("--events", type=Path, default=ROOT / "examples" / "events.jsonl")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--encoding", choices=("single-object", "confluent", "json"),
        default=os.environ.get("DEMO_ENCODING") or "single-object",
        help="how the events are written: Avro single-object (local schemas), the Confluent wire format "
        "through a Schema Registry, or Segment JSON (default: DEMO_ENCODING, else single-object)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging("WARNING", style="text")
    base_env = load_settings()  # validates what the user set before we start anything
    registry = (
        schema_registry(base_env.kafka.schema_registry_url)
        if args.encoding == "confluent"
        else contextlib.nullcontext("")
    )
    with (
        kafka(base_env.kafka.bootstrap_servers) as bootstrap,
        registry as registry_url,
        twilio(base_env.twilio.configured) as tw,
    ):
        result = _run(args, bootstrap, {**tw, "KAFKA_SCHEMA_REGISTRY_URL": registry_url})
    # Printed last, once the broker and the simulator are stopped: nothing of theirs follows it.
    _summary(result)
    return result.code


@dataclass
class _Result:
    code: int
    produced: int
    port: int | None
    metrics: Metrics
    outcomes: list[tuple[str, int, int, list[tuple[str, str, str]]]]
    statuses: Metrics | None = None  # the webhook receiver's, when it ran (with the simulator)


def _run(args: argparse.Namespace, bootstrap: str, service_env: dict[str, str]) -> _Result:
    """Produce the sample events to fresh topics and run the service on them until it is idle."""
    from consumer.commands.produce import produce_events
    from consumer.service.main import run_service
    from consumer.service.parts import Parts
    from consumer.service.service import Service

    run = uuid.uuid4().hex[:8]
    topic, dlq, ledger = f"demo.events.{run}", f"demo.dead-letter.{run}", f"demo.sent.{run}"
    shop_topic = f"demo.shop-orders.{run}"
    _create_topics(bootstrap, {topic: args.partitions, shop_topic: args.partitions, dlq: 1})
    events = [json.loads(line) for line in args.events.read_text().splitlines() if line.strip()]
    _move_appointments_ahead(events, datetime.now(UTC))
    registry_url = service_env.get("KAFKA_SCHEMA_REGISTRY_URL", "")
    produced = produce_events(events, bootstrap=bootstrap, topic=topic, encoding=args.encoding,
                              schemas_dir=ROOT / "schemas", registry_url=registry_url)  # fmt: skip
    produced += _produce_garbage(bootstrap, topic)
    how = f"{args.encoding}, through the Schema Registry at {registry_url}" if registry_url else args.encoding
    print(f"demo: produced {produced} records to {topic} ({args.partitions} partitions, {how})")
    scratch = tempfile.TemporaryDirectory(prefix="kafka-twilio-demo-")
    shop = produce_shop_orders(bootstrap, shop_topic, demo_mappings=args.mappings,
                               scratch=Path(scratch.name), registry_url=registry_url)  # fmt: skip
    produced += shop.produced
    print(
        f"demo: produced {shop.produced} shop orders (com.shop.OrderPlaced, {shop.encoding}) to {shop_topic}"
    )
    env = {**service_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPICS": f"{topic},{shop_topic}",
        "KAFKA_GROUP_ID": f"demo-{run}", "KAFKA_DEAD_LETTER_TOPIC": dlq, "KAFKA_DEDUP_TOPIC": ledger,
        "KAFKA_STATUS_TOPIC": f"demo.status.{run}", "KAFKA_SUPPRESSION_TOPIC": f"demo.suppressions.{run}",
        "CONSUMER_MAPPINGS": str(shop.mappings), "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"),
        "CONSUMER_METRICS_PORT": "0", "CONSUMER_METRICS_HOST": "127.0.0.1",
        "WEBHOOKS_HOST": "127.0.0.1", "WEBHOOKS_PORT": "0",
    }  # fmt: skip
    result = _Result(0, produced, None, Metrics(), [])
    with scratch, _receiver(env) as statuses:
        settings = load_settings(environ={**os.environ, **env})
        service = Service(settings, Parts.real(settings), metrics=result.metrics,
                          journal=lambda *r: result.outcomes.append(r), exit_when_idle_s=2.0)  # fmt: skip
        result.code = run_service(service)
        result.port = service.metrics_port
        result.statuses = statuses
        if statuses is not None:
            _settle(statuses)
    return result


@contextlib.contextmanager
def _receiver(env: dict[str, str]) -> Iterator[Metrics | None]:
    """The webhook receiver, when the simulator posts to it (real Twilio cannot reach loopback); it
    sets CONSUMER_STATUS_CALLBACK_URL in `env` to itself."""
    if "TWILIO_BASE_URL" not in env:
        yield None
        return
    from consumer.webhooks.main import running_receiver

    with running_receiver(load_settings(environ={**os.environ, **env})) as (port, metrics):
        env["CONSUMER_STATUS_CALLBACK_URL"] = f"http://127.0.0.1:{port}/twilio/status"
        print(f"demo: webhook receiver on http://127.0.0.1:{port} (checks the simulator's signatures)")
        yield metrics


def _settle(statuses: Metrics, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """Wait until the simulator's last callbacks are in: no new post for `quiet_s` (at most `limit_s`)."""
    import time

    def posts() -> float:
        samples = statuses.registry.get_sample_value
        return sum(samples("kafka_twilio_webhook_requests_total", {"kind": "status", "result": r}) or 0.0
                   for r in ("ok", "forbidden", "bad_request", "kafka_failed"))  # fmt: skip

    deadline, seen, since = time.monotonic() + limit_s, -1.0, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        if (now := posts()) != seen:
            seen, since = now, time.monotonic()
        time.sleep(0.1)


def _create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": logging.getLogger("librdkafka")}
    admin = AdminClient(config)
    for name, count in partitions.items():
        admin.create_topics([NewTopic(name, count, 1)])[name].result(timeout=30)


def _produce_garbage(bootstrap: str, topic: str) -> int:
    """One record that is not an event at all, to show the dead-letter path."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "logger": logging.getLogger("librdkafka")})
    producer.produce(topic, key=b"garbage", value=b"\xc3\x01not-avro")
    producer.flush(10)
    return 1


def _summary(result: _Result) -> None:
    pairs: Counter[tuple[str, str]] = Counter()
    for *_, results in result.outcomes:
        for _mapping, outcome, reason in results:
            pairs[(outcome, reason)] += 1
    print(f"\nSummary: {len(result.outcomes)} of {result.produced} records finished")
    for outcome in ("sent", "skipped", "dead_lettered"):
        total = sum(n for (o, _), n in pairs.items() if o == outcome)
        detail = ", ".join(f"{r}: {n}" for (o, r), n in sorted(pairs.items()) if o == outcome)
        print(f"  {outcome:<14} {total:>4}   {detail}")
    if result.statuses is not None:
        _delivery_summary(result.statuses)
    registry = result.metrics.registry
    count = registry.get_sample_value("kafka_twilio_ledger_write_seconds_count") or 0.0
    window_s = registry.get_sample_value("kafka_twilio_ledger_write_seconds_sum") or 0.0
    if count:
        mean_ms = 1000 * window_s / count
        print(f"Residual duplicate window (Twilio 201 -> ledger acknowledged): mean {mean_ms:.1f} ms")
    print(f"Metrics were served at http://127.0.0.1:{result.port}/metrics (kafka_twilio_* series)")


def _delivery_summary(statuses: Metrics) -> None:
    """Delivered / undelivered, from the simulator's signed callbacks as the receiver counted them."""
    by_status: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for metric in statuses.registry.collect():
        if metric.name != "kafka_twilio_message_status":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                by_status[sample.labels["status"]] += int(sample.value)
                if sample.labels["error_code"]:
                    codes[f"twilio_{sample.labels['error_code']}"] += int(sample.value)
    for status in ("delivered", "undelivered"):
        detail = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())) if status == "undelivered" else ""
        print(f"  {status:<14} {by_status[status]:>4}   {detail or 'reported by signed status callbacks'}")
