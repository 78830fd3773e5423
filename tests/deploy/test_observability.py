"""Alerts and dashboard: every expression parses as Prometheus parses it and reads only exported metrics."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from consumer.metrics import PREFIX, Metrics
from tests.deploy.render import DEPLOY, config_map, one, promql_check, render

RULES = DEPLOY / "prometheus" / "rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"

#: Series Prometheus itself writes for every target; the only names not exported by our code.
PROMETHEUS_SERIES = {"up"}

# What prometheus_client appends to a family's name in the exposition, by family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_series(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can expose, including families that have no sample yet (a labelled
    counter shows nothing until its first increment, but a query may rightly read it)."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@cache
def exported() -> frozenset[str]:
    return frozenset(exported_series(Metrics().registry))


@cache
def rules() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return doc


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rules()["spec"]["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in all_rules() if "alert" in r}


@cache
def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


# Grafana replaces its variables before Prometheus sees a query; do the same with plausible values.
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def grafana_to_promql(expr: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return "5m" if name.startswith("__") else "value"

    return _GRAFANA_VAR.sub(value, expr)


def dashboard_queries() -> dict[str, str]:
    """'panel title / refId' -> PromQL, with Grafana variables substituted."""
    return {
        f"{p['title']} / {t['refId']}": grafana_to_promql(t["expr"])
        for p in panels()
        for t in p.get("targets", [])
    }


def rule_queries() -> dict[str, str]:
    return {r.get("alert") or r["record"]: r["expr"] for r in all_rules()}


@cache
def parsed() -> dict[str, dict[str, Any]]:
    queries = {**{f"rule {k}": v for k, v in rule_queries().items()},
               **{f"dashboard {k}": v for k, v in dashboard_queries().items()}}  # fmt: skip
    results = promql_check(list(queries.values()))
    return dict(zip(queries, results, strict=True))


# ---- the metric names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda r: Counter("a", "h", ["x"], registry=r), {"a_total", "a_created"}),
        (lambda r: Gauge("b", "h", registry=r), {"b"}),
        (lambda r: Histogram("c_seconds", "h", registry=r), {"c_seconds_bucket", "c_seconds_sum",
                                                             "c_seconds_count", "c_seconds_created"}),
        (lambda r: Info("d", "h", registry=r), {"d_info"}),
    ],
)  # fmt: skip
def test_series_names_follow_the_exposition_suffixes_even_before_the_first_sample(
    make: Any, expected: set[str]
) -> None:
    registry = CollectorRegistry()
    make(registry)
    assert exported_series(registry) == expected


def test_the_code_exports_the_series_the_dashboard_is_built_on() -> None:
    # Sanity on the source of truth itself: the cross-check below is only as good as this list.
    names = exported()
    assert all(n.startswith(PREFIX) for n in names)
    for name in ("kafka_twilio_outcomes_total", "kafka_twilio_send_latency_seconds_bucket",
                 "kafka_twilio_consumer_lag", "kafka_twilio_build_info"):  # fmt: skip
        assert name in names


def test_every_alert_and_recording_rule_and_dashboard_query_parses_with_the_prometheus_parser() -> None:
    errors = {name: r["error"] for name, r in parsed().items() if r.get("error")}
    assert not errors, "\n".join(f"{k}: {v}" for k, v in errors.items())
    assert len(parsed()) >= 30


def test_the_parser_check_rejects_a_broken_expression() -> None:
    (ok, broken, no_metric) = promql_check(["sum(rate(x_total[5m]))", "sum(rate(x_total[5m])", "vector(1)"])
    assert ok == {"metrics": ["x_total"]}
    assert "error" in broken
    assert no_metric == {"metrics": []}


def test_every_metric_read_by_the_alerts_and_dashboard_is_exported_by_the_code() -> None:
    recorded = {r["record"] for r in all_rules() if "record" in r}
    allowed = exported() | recorded | PROMETHEUS_SERIES
    missing = {
        f"{name}: {metric}"
        for name, r in parsed().items()
        for metric in r["metrics"]
        if metric not in allowed
    }
    assert not missing, "queries read series the code does not export:\n" + "\n".join(sorted(missing))
    used = {m for r in parsed().values() for m in r["metrics"]}
    assert used & exported(), "no query reads a kafka_twilio_ series at all"


def test_every_recording_rule_name_is_used_and_follows_the_level_metric_operation_convention() -> None:
    used = {m for r in parsed().values() for m in r["metrics"]}
    for rule in all_rules():
        if "record" in rule:
            assert re.fullmatch(r"kafka_twilio:[a-z_0-9]+:[a-z_0-9]+", rule["record"]), rule["record"]
            assert rule["record"] in used, f"{rule['record']} is recorded but never read"


def test_dashboard_variables_query_exported_series() -> None:
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?,\s*(\w+)\)", var["query"]["query"])
        assert match, f"variable {var['name']}: unexpected query {var['query']['query']}"
        assert match.group(1) in exported(), f"variable {var['name']} reads {match.group(1)}"


# ---- the alerts -----------------------------------------------------------------------------------

REQUIRED_ALERTS = {
    "KafkaTwilioLagGrowing": "kafka_twilio:consumer_lag:sum",
    "KafkaTwilioDeadLetterRateHigh": "kafka_twilio:dead_letter_ratio:rate10m",
    "KafkaTwilioAuthenticationErrors": "kafka_twilio_twilio_requests_total",
    "KafkaTwilioNoSendsWhileLagging": "kafka_twilio_outcomes_total",
    "KafkaTwilioConsumerDown": "up",
    "KafkaTwilioDeliveryRateLow": "kafka_twilio:delivery_ratio:rate30m",
    "KafkaTwilioCarrierFiltering": "kafka_twilio_message_status_total",
    "KafkaTwilioWebhookSignaturesRefused": "kafka_twilio_webhook_requests_total",
}


@pytest.mark.parametrize(("alert", "metric"), REQUIRED_ALERTS.items())
def test_the_issues_alerts_exist_and_read_the_right_series(alert: str, metric: str) -> None:
    assert alert in alerts(), f"missing alert {alert}"
    assert metric in parsed()[f"rule {alert}"]["metrics"]


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_has_a_severity_and_an_actionable_description(alert: str) -> None:
    rule = alerts()[alert]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"].split()) >= 10, "say what to check or do"


def test_the_authentication_alert_watches_twilios_authentication_error_code() -> None:
    assert 'code="20003"' in alerts()["KafkaTwilioAuthenticationErrors"]["expr"]


def test_the_consumer_down_alert_selects_the_job_the_service_monitor_produces() -> None:
    # The Prometheus Operator names the job after the Service unless the ServiceMonitor sets jobLabel.
    docs = render("kustomize:base")
    monitor = one(docs, "ServiceMonitor")
    assert "jobLabel" not in monitor["spec"]
    job = one(docs, "Service")["metadata"]["name"]
    expr = alerts()["KafkaTwilioConsumerDown"]["expr"]
    jobs = set(re.findall(r'job="([^"]+)"', expr))
    assert jobs == {job}, f"alert selects job {jobs}, Prometheus scrapes job {job!r}"


# ---- the dashboard --------------------------------------------------------------------------------

REQUIRED_PANELS = {
    "throughput": "kafka_twilio_records_consumed_total",
    "outcomes by reason": "kafka_twilio_outcomes_total",
    "twilio errors by code": "kafka_twilio_twilio_requests_total",
    "latency percentiles": "kafka_twilio_send_latency_seconds_bucket",
    "lag": "kafka_twilio_consumer_lag",
    "in flight": "kafka_twilio_in_flight",
    "dead-letter rate": "kafka_twilio_dead_letters_total",
    "rate-limit waits": "kafka_twilio_rate_limit_wait_seconds_total",
    "delivery funnel": "kafka_twilio_message_status_total",
    "time to delivered": "kafka_twilio_time_to_delivered_seconds_bucket",
    "top undelivered error codes": "kafka_twilio_error_code_info",
    "suppression list": "kafka_twilio_suppressed_recipients",
}


@pytest.mark.parametrize(("topic", "metric"), REQUIRED_PANELS.items())
def test_the_dashboard_has_a_panel_for_each_topic_the_issue_names(topic: str, metric: str) -> None:
    matching = [p for p in panels() if topic in p["title"].lower()]
    assert matching, f"no panel titled like {topic!r}"
    reads = {
        m
        for p in matching
        for t in p["targets"]
        for m in parsed()[f"dashboard {p['title']} / {t['refId']}"]["metrics"]
    }
    assert metric in reads, f"panel {topic!r} does not read {metric}"


def test_the_carrier_filtering_alert_watches_twilios_30007() -> None:
    assert 'error_code="30007"' in alerts()["KafkaTwilioCarrierFiltering"]["expr"]


def test_the_latency_panel_shows_three_percentiles() -> None:
    (panel,) = [p for p in panels() if "latency percentiles" in p["title"].lower()]
    quantiles = {m for t in panel["targets"] for m in re.findall(r"histogram_quantile\(([0-9.]+)", t["expr"])}
    assert {"0.5", "0.9", "0.99"} <= quantiles


def test_dashboard_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", f"{p['title']} hard-codes a data source"
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_the_dashboard_config_map_carries_the_dashboard_file_unchanged() -> None:
    cm = config_map(render("kustomize:base"), "kafka-twilio-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = cm["data"].values()
    assert json.loads(content) == dashboard()


def test_the_rule_file_shipped_by_kustomize_is_the_one_checked_here() -> None:
    shipped = one(render("kustomize:base"), "PrometheusRule")
    assert shipped["spec"] == rules()["spec"]
