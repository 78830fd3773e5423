"""A real Prometheus scrapes the service through a demo-sized run; the tests read what it scraped through
its HTTP API, as Grafana does: the series themselves, the rules it evaluated, and every dashboard panel.

The run is the demo's (examples/mappings.yaml, examples/events.jsonl, one record that is not an event)
written in the Confluent wire format through the real Schema Registry, the shop's own orders on a topic
of their own (read through their source, as JSON), plus enough orders that the
paced toll-free sender waits, and the simulator answering some requests with 429 so retries and error
codes have series: each panel then shows what it is for.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from consumer.commands.demo import _move_appointments_ahead
from consumer.commands.demo_shop import SHOP_RECORDS, combined_mappings
from consumer.commands.produce import produce_events, read_events
from consumer.metrics import Metrics
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import load_settings
from consumer.simulator import SimulatorConfig, running_simulator
from tests.kafka import create_topic
from tests.prometheus import Prometheus
from tests.webhooks import running_receiver

pytestmark = [
    pytest.mark.integration,
    # confluent-kafka's registry client leaves a socket the registry closed to the collector (see
    # tests/integration/test_registry.py); the clients themselves are closed.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
NAMESPACE = "kafka-twilio-test"
EXTRA_ORDERS = 20


@dataclass
class Run:
    """What one scraped run left: its time span, the service's own account, and the labels it had."""

    prometheus: Prometheus
    pod: str
    topic: str
    webhooks: str = ""  # the receiver's pod label
    start: float = 0.0
    end: float = 0.0
    produced: int = 0
    journal: list[tuple[str, int, int, list[tuple[str, str, str]]]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    def outcomes(self, kind: str | None = None) -> int:
        return sum(1 for *_, rs in self.journal for _, o, _ in rs if kind is None or o == kind)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> None:
    """Poll `condition()` until true; fail naming `what` after a generous bound."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def demo_events() -> list[dict[str, Any]]:
    events = [
        json.loads(line) for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines() if line
    ]
    _move_appointments_ahead(events, datetime.now(UTC))
    for n in range(EXTRA_ORDERS):
        events.append({
            "type": "track", "event": "Order Completed", "messageId": f"msg-x-{uuid.uuid4().hex}",
            "userId": f"user-x{n}", "timestamp": "2026-11-28T09:00:00Z",
            "properties": {"order_id": f"X-{n}", "total": 10 + n, "phone": f"+1415555{3000 + n}"},
        })  # fmt: skip
    return events


def simulator_config() -> SimulatorConfig:
    templates = json.loads((ROOT / "examples" / "content-templates.json").read_text())
    # The first two answers are lost after Twilio accepted: reconciliation finds those messages.
    # Two of the extra orders come back undelivered: one filtered by the carrier, one to a landline
    # (which puts the recipient on the suppression list), so the return path's panels have data.
    config = SimulatorConfig(
        latency_ms=80,
        latency_jitter_ms=40,
        error_rates={20429: 0.15},
        drop_after_accept_first=2,
        seed=15,
        undelivered_to={"+14155553000": 30007, "+14155553001": 30006},
    )
    return config.replace(
        templates=[*config.templates, *({**t, "account_sid": config.account_sid} for t in templates)],
        retry_after_s=0.2,
    )


@pytest.fixture(scope="module")
def run(
    prometheus: Prometheus,
    kafka_bootstrap: str,
    schema_registry_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """The service through a demo-sized run, scraped from before the first record until the last commit."""
    tag = uuid.uuid4().hex[:8]
    topic, dlq, ledger = f"prom.events.{tag}", f"prom.dlq.{tag}", f"prom.sent.{tag}"
    shop = f"prom.shop.{tag}"  # the demo's shop orders (not Segment-shaped), read through their source
    create_topic(kafka_bootstrap, name=topic, partitions=3)
    create_topic(kafka_bootstrap, name=shop, partitions=3)
    mappings = combined_mappings(ROOT / "examples" / "mappings.yaml", shop, tmp_path_factory.mktemp("prom"))
    result = Run(prometheus, pod=f"kafka-twilio-{tag}", topic=topic, webhooks=f"kafka-twilio-webhooks-{tag}")
    with running_simulator(simulator_config()) as sim, running_receiver(load_settings(environ={
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_STATUS_TOPIC": f"prom.status.{tag}",
        "KAFKA_SUPPRESSION_TOPIC": f"prom.suppressions.{tag}", "TWILIO_AUTH_TOKEN": sim.auth_token,
        "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"),
    })) as receiver:  # fmt: skip
        settings = load_settings(environ={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPICS": f"{topic},{shop}",
            "KAFKA_GROUP_ID": f"prom-{tag}", "KAFKA_DEAD_LETTER_TOPIC": dlq, "KAFKA_DEDUP_TOPIC": ledger,
            "KAFKA_SUPPRESSION_TOPIC": f"prom.suppressions.{tag}",
            "CONSUMER_STATUS_CALLBACK_URL": receiver.status_url,
            "KAFKA_SCHEMA_REGISTRY_URL": schema_registry_url,
            "TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_API_KEY_SID": sim.api_key_sid,
            "TWILIO_API_KEY_SECRET": sim.api_key_secret, "TWILIO_BASE_URL": sim.base_url,
            "TWILIO_CONTENT_BASE_URL": sim.base_url, "TWILIO_MESSAGING_BASE_URL": sim.base_url,
            "CONSUMER_MAPPINGS": str(mappings),
            "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"), "CONSUMER_METRICS_HOST": "127.0.0.1",
            "CONSUMER_METRICS_PORT": "0", "CONSUMER_LAG_INTERVAL_S": "1", "CONSUMER_RETRY_BASE_S": "0.05",
            "CONSUMER_RETRY_CAP_S": "0.5",
        })  # fmt: skip
        service = Service(settings, Parts.real(settings), metrics=result.metrics,
                          journal=lambda *r: result.journal.append(r), handle_signals=False)  # fmt: skip
        codes: list[int] = []
        thread = threading.Thread(target=lambda: codes.append(asyncio.run(service.run())), name="service")
        thread.start()
        try:
            wait_for(lambda: service.metrics_port is not None or not thread.is_alive(), "the metrics port")
            assert service.metrics_port is not None, "the service did not start"
            prometheus.scrape(tag, service.metrics_port, {"namespace": NAMESPACE, "pod": result.pod})
            prometheus.scrape(
                f"{tag}-webhooks", receiver.port, {"namespace": NAMESPACE, "pod": result.webhooks}
            )
            for pod in (result.pod, result.webhooks):
                up = f'up{{job="kafka-twilio", pod="{pod}"}}'
                wait_for(lambda up=up: prometheus.value(up) == 1, f"Prometheus to scrape {pod}")
            result.start = time.time()
            result.produced = produce_events(
                demo_events(), bootstrap=kafka_bootstrap, topic=topic, encoding="confluent",
                schemas_dir=ROOT / "schemas", registry_url=schema_registry_url,
            )  # fmt: skip
            garbage = Producer({"bootstrap.servers": kafka_bootstrap})
            garbage.produce(topic, key=b"garbage", value=b"\xc3\x01not-avro")
            assert garbage.flush(30) == 0
            result.produced += 1
            result.produced += produce_events(
                read_events(SHOP_RECORDS.read_text().splitlines()), bootstrap=kafka_bootstrap, topic=shop,
                encoding="json", key_path="customer.id",
            )  # fmt: skip
            wait_for(lambda: len(result.journal) == result.produced, "every record to finish")
            total = f'sum(kafka_twilio_outcomes_total{{pod="{result.pod}"}})'
            wait_for(lambda: prometheus.value(total) == result.outcomes(), "the last outcomes to be scraped")
            lag = f'max(kafka_twilio_consumer_lag{{pod="{result.pod}"}})'
            wait_for(lambda: prometheus.value(lag) == 0, "the lag of every partition to be scraped at 0")
            recorded = f'kafka_twilio:consumer_lag:sum{{namespace="{NAMESPACE}", topic="{topic}"}}'
            wait_for(lambda: prometheus.value(recorded) == 0, "the recording rule to see the lag at 0")
            statuses = f'sum by (status) (kafka_twilio_message_status_total{{pod="{result.webhooks}"}})'
            final = {"delivered", "undelivered"}
            wait_for(lambda: {s["metric"]["status"] for s in prometheus.query(statuses)} >= final,
                     "the status callbacks to be scraped")  # fmt: skip
            changes = f'sum(kafka_twilio_suppression_changes_total{{pod="{result.webhooks}"}})'
            wait_for(lambda: prometheus.value(changes) == 1, "the landline's suppression to be scraped")
            result.end = time.time()
        finally:
            service.request_stop()
            thread.join(60)
            prometheus.unscrape(tag)
            prometheus.unscrape(f"{tag}-webhooks")
    assert codes == [0]
    return result


def test_prometheus_scrapes_outcomes_requests_lag_and_in_flight_as_the_service_counted_them(run: Run) -> None:
    prom, pod = run.prometheus, run.pod
    sent = prom.value(f'sum(kafka_twilio_outcomes_total{{pod="{pod}", outcome="sent"}})')
    assert sent == run.outcomes("sent") > 0
    dead = prom.value(f'sum(kafka_twilio_outcomes_total{{pod="{pod}", outcome="dead_lettered"}})')
    assert dead == run.outcomes("dead_lettered") >= 1  # the record that is not an event
    ok = prom.value(f'sum(kafka_twilio_twilio_requests_total{{pod="{pod}", status_class="2xx"}})')
    found = prom.value(f'sum(kafka_twilio_reconciled_total{{pod="{pod}", result="found"}})')
    assert found == 2, "the two answers lost after accepting were found in Twilio's list"
    assert ok + found == sent, "every message sent was one 2xx answer, or found after a lost one"
    throttled = prom.value(f'sum(kafka_twilio_twilio_requests_total{{pod="{pod}", code="20429"}})')
    assert throttled, "the simulator's 429s are scraped"
    lags = prom.query(f'kafka_twilio_consumer_lag{{pod="{pod}", topic="{run.topic}"}}')
    assert sorted(s["metric"]["partition"] for s in lags) == ["0", "1", "2"]
    assert {s["value"][1] for s in lags} == {"0"}
    assert prom.value(f'kafka_twilio_in_flight{{pod="{pod}"}}') == 0, "nothing left in flight after the run"
    assert prom.value(f'kafka_twilio_schema_lookups_total{{pod="{pod}", result="ok"}}') == 1
    consumed = prom.value(f'sum(kafka_twilio_records_consumed_total{{pod="{pod}"}})')
    assert consumed == run.produced


def test_prometheus_loads_the_shipped_rules_and_evaluates_them_without_errors(run: Run) -> None:
    groups = run.prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert "KafkaTwilioDeadLetterRateHigh" in rules
    assert "kafka_twilio:consumer_lag:sum" in rules
    unhealthy = {name: r.get("lastError") for name, r in rules.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    query = f'kafka_twilio:consumer_lag:sum{{namespace="{NAMESPACE}", topic="{run.topic}"}}'
    recorded = run.prometheus.api("query", query=query, time=run.end)["result"]
    assert [s["value"][1] for s in recorded] == ["0"], "the recording rule reads the scraped lag"


# ---- every dashboard panel ----------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def panel_targets() -> list[tuple[str, str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (p["title"], t["refId"], t["expr"])
        for p in dashboard["panels"]
        if p["type"] != "row"
        for t in p.get("targets", [])
    ]


def substitute(expr: str, pod: str) -> str:
    """What Grafana sends for the run's namespace and pod; $__rate_interval is 4 scrape intervals."""
    values = {"namespace": NAMESPACE, "pod": pod, "__rate_interval": "4s", "__interval": "1s"}

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown dashboard variable ${name}"
        return values[name]

    return _VARIABLE.sub(one, expr)


@pytest.mark.parametrize(
    ("title", "ref", "expr"), panel_targets(), ids=[f"{t} / {r}" for t, r, _ in panel_targets()]
)
def test_every_dashboard_panel_returns_data_after_a_demo_sized_run(
    run: Run, title: str, ref: str, expr: str
) -> None:
    promql = substitute(expr, run.pod)
    series = run.prometheus.query_range(promql, run.start - 5, run.end + 1, step=1)
    values = [float(v) for s in series for _, v in s["values"] if v not in ("NaN", "+Inf", "-Inf")]
    assert values, f"panel {title!r} ({ref}) shows no data over the run: {promql}"


def test_the_top_error_codes_panel_names_each_code_by_its_meaning(run: Run) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "Top undelivered error codes"]
    series = run.prometheus.query_range(substitute(panel["targets"][0]["expr"], run.pod), run.start - 5,
                                        run.end + 1, step=1)  # fmt: skip
    named = {s["metric"]["error_code"]: s["metric"].get("meaning") for s in series}
    assert named == {"30007": "message filtered by the carrier", "30006": "landline or unreachable carrier"}


def test_the_dashboard_variables_offer_the_runs_namespace_and_pod(run: Run) -> None:
    namespaces = run.prometheus.api("label/namespace/values", **{"match[]": "kafka_twilio_build_info"})
    assert NAMESPACE in namespaces
    match = f'kafka_twilio_build_info{{namespace="{NAMESPACE}"}}'
    assert run.pod in run.prometheus.api("label/pod/values", **{"match[]": match})


def test_the_panel_check_finds_no_data_for_a_series_the_run_never_had(run: Run) -> None:
    # The check above must be able to fail: a panel reading a label value that never occurred.
    expr = (
        'sum(rate(kafka_twilio_outcomes_total{namespace="$namespace", pod=~"$pod", outcome="lost"}'
        "[$__rate_interval]))"
    )
    assert run.prometheus.query_range(substitute(expr, run.pod), run.start - 5, run.end + 1, step=1) == []
