"""Prometheus metrics: one prefix, bounded labels, an explicit registry.

Labels never carry personal data: mapping ids, reasons, topics, partitions, status classes and
Twilio error codes are all bounded sets chosen by the operator or by Twilio, never a phone number.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "kafka_twilio"

# Send latency buckets: Twilio answers in 50-300 ms normally; the tail matters for capacity planning.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric the service exports, registered on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.build_info = Info(f"{p}_build", "Version of the running consumer.", registry=r)
        self.records_consumed = Counter(
            f"{p}_records_consumed", "Records polled from Kafka.", ["topic"], registry=r
        )
        self.outcomes = Counter(
            f"{p}_outcomes",
            "Final outcome of every (record, mapping) pair: sent, skipped or dead_lettered, with a reason.",
            ["mapping", "outcome", "reason"],
            registry=r,
        )
        self.records_finished = Counter(
            f"{p}_records_finished",
            "Records whose every outcome is final (committable).",
            ["topic"],
            registry=r,
        )
        self.twilio_requests = Counter(
            f"{p}_twilio_requests",
            "Twilio HTTP requests by status class (2xx, 4xx, 5xx, transport) and Twilio error code.",
            ["status_class", "code"],
            registry=r,
        )
        self.send_latency = Histogram(
            f"{p}_send_latency_seconds",
            "Time from writing a Messages request to Twilio's answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(f"{p}_in_flight", "Twilio requests in flight now.", registry=r)
        self.concurrency_limit = Gauge(
            f"{p}_concurrency_limit", "Current adaptive limit on requests in flight.", registry=r
        )
        self.buffered_records = Gauge(
            f"{p}_buffered_records", "Records consumed but not yet finished.", registry=r
        )
        self.retries = Counter(f"{p}_retries", "Send attempts retried, by reason.", ["reason"], registry=r)
        self.dead_letters = Counter(
            f"{p}_dead_letters", "Records written to the dead-letter topic.", ["stage", "reason"], registry=r
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag", "High watermark minus committed offset.", ["topic", "partition"], registry=r
        )
        self.assigned_partitions = Gauge(f"{p}_assigned_partitions", "Partitions assigned.", registry=r)
        self.paused_partitions = Gauge(
            f"{p}_paused_partitions", "Partitions paused for back-pressure.", registry=r
        )
        self.rate_limit_wait = Counter(
            f"{p}_rate_limit_wait_seconds",
            "Time sends spent waiting on per-sender rate limits.",
            ["sender_kind"],
            registry=r,
        )
        self.commits = Counter(
            f"{p}_commits", "Offset commits, by result (ok, partial, failed).", ["result"], registry=r
        )
        self.kafka_errors = Counter(
            f"{p}_kafka_errors",
            "Errors the Kafka clients reported (client callback or consumed record), by librdkafka code.",
            ["source", "code"],
            registry=r,
        )
        self.may_have_sent = Counter(
            f"{p}_ambiguous_sends",
            "Sends that failed after the request was written (Twilio may have sent them).",
            registry=r,
        )
        self.ledger_write_seconds = Histogram(
            f"{p}_ledger_write_seconds",
            "From Twilio's 201 to Kafka acknowledging the ledger entry: the only window in which a crash "
            "can cause a duplicate send.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.ledger_entries = Gauge(
            f"{p}_ledger_entries",
            "Sends remembered for de-duplication (this replica's partitions).",
            registry=r,
        )
        self.ledger_evictions = Counter(
            f"{p}_ledger_evictions",
            "Ledger entries dropped before their window ended because the ledger was full.",
            registry=r,
        )
        self.ready = Gauge(
            f"{p}_ready", "1 when partitions are assigned and Twilio is reachable.", registry=r
        )
