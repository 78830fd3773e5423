"""Prometheus metrics: one prefix, bounded labels, an explicit registry.

Labels never carry personal data: mapping ids, reasons, topics, partitions, status classes and
Twilio error codes are all bounded sets chosen by the operator or by Twilio, never a phone number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "kafka_twilio"

# Send latency buckets: Twilio answers in 50-300 ms normally; the tail matters for capacity planning.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Event → Twilio's answer: a one-time code should leave within tens of milliseconds; backfills and
# outages show up in the long tail (an hour and more falls in +Inf).
DELAY_BUCKETS = (
    0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip
# Ledger writes (intent before a send, outcome after it) take milliseconds on a healthy broker.
LEDGER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# From the event's time to Twilio's "delivered": seconds for one-time codes, minutes behind a carrier.
DELIVERED_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# The receiver answers once Kafka acknowledged: a few milliseconds on a healthy broker.
ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """Every metric the service exports, registered on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.build_info = Info(f"{PREFIX}_build", "Version of the running consumer.", registry=self.registry)
        self._records()
        self._twilio()
        self._kafka()
        self._state()
        self._return_path()

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(f"{PREFIX}_{name}", doc, labels, buckets=buckets, registry=self.registry)

    def _records(self) -> None:
        self.records_consumed = self._counter("records_consumed", "Records polled from Kafka.", ["topic"])
        self.outcomes = self._counter(
            "outcomes",
            "Final outcome of every (record, mapping) pair: sent, skipped or dead_lettered, with a reason.",
            ["mapping", "outcome", "reason"],
        )
        self.records_finished = self._counter(
            "records_finished", "Records whose every outcome is final (committable).", ["topic"]
        )
        self.buffered_records = self._gauge("buffered_records", "Records consumed but not yet finished.")
        self.dead_letters = self._counter(
            "dead_letters", "Records written to the dead-letter topic.", ["stage", "reason"]
        )
        self.source_records = self._counter(
            "source_records",
            "Records of a user's own schema read through a `sources:` entry, by source and result "
            "(decoded, skipped: a field its source reads is missing, dead_lettered).",
            ["source", "result"],
        )
        self.ready = self._gauge("ready", "1 when partitions are assigned and Twilio is reachable.")
        self.schema_lookups = self._counter(
            "schema_lookups",
            "Schema Registry look-ups of writer schemas, by result (ok, unknown_schema, schema_mismatch, "
            "registry_unavailable, registry_refused).",
            ["result"],
        )
        self.records_waiting_for_schema = self._gauge(
            "records_waiting_for_schema",
            "Records held until the Schema Registry gives their writer schema (with their partition's "
            "later records).",
        )

    def _twilio(self) -> None:
        self.twilio_requests = self._counter(
            "twilio_requests",
            "Twilio HTTP requests by status class (2xx, 4xx, 5xx, transport) and Twilio error code.",
            ["status_class", "code"],
        )
        self.send_latency = self._histogram(
            "send_latency_seconds",
            "Time from writing a Messages request to Twilio's answer.",
            LATENCY_BUCKETS,
        )
        self.send_delay = self._histogram(
            "send_delay_seconds",
            "Time from the record's Kafka timestamp (clock=kafka) or the event's own timestamp "
            "(clock=event) to Twilio accepting the message, per mapping.",
            DELAY_BUCKETS,
            ["mapping", "clock"],
        )
        self.delay_objective = self._gauge(
            "delay_objective_seconds",
            "CONSUMER_DELAY_OBJECTIVE_S: the p99 of send_delay_seconds above which "
            "KafkaTwilioSendDelayHigh fires.",
        )
        self.in_flight = self._gauge("in_flight", "Twilio requests in flight now.")
        self.concurrency_limit = self._gauge(
            "concurrency_limit", "Current adaptive limit on requests in flight."
        )
        self.retries = self._counter("retries", "Send attempts retried, by reason.", ["reason"])
        self.rate_limit_wait = self._counter(
            "rate_limit_wait_seconds", "Time sends spent waiting on per-sender rate limits.", ["sender_kind"]
        )
        self.may_have_sent = self._counter(
            "ambiguous_sends", "Sends that failed after the request was written (Twilio may have sent them)."
        )
        self.reconciled = self._counter(
            "reconciled",
            "In-doubt sends settled by asking Twilio's message list: found (already sent), not_found (sent "
            "now), unresolved (Twilio could not be asked; dead-lettered as ambiguous).",
            ["result"],
        )
        self.twilio_available = self._gauge(
            "twilio_available", "0 while Twilio fails for every request (sending waits), else 1."
        )

    def _kafka(self) -> None:
        self.consumer_lag = self._gauge(
            "consumer_lag", "High watermark minus committed offset.", ["topic", "partition"]
        )
        self.assigned_partitions = self._gauge("assigned_partitions", "Partitions assigned.")
        self.partition_share = self._gauge(
            "partition_share",
            "This replica's part of the source topics' partitions (k/n): the part of each sender's rate "
            "and of the in-flight budget it uses.",
        )
        self.paused_partitions = self._gauge("paused_partitions", "Partitions paused for back-pressure.")
        self.commits = self._counter(
            "commits", "Offset commits, by result (ok, partial, failed).", ["result"]
        )
        self.kafka_errors = self._counter(
            "kafka_errors",
            "Errors the Kafka clients reported (client callback or consumed record), by librdkafka code.",
            ["source", "code"],
        )

    def _state(self) -> None:
        self.ledger_write_seconds = self._histogram(
            "ledger_write_seconds",
            "From Twilio's 201 to Kafka acknowledging the sent entry (a crash inside it leaves the intent, "
            "which reconciliation settles).",
            LEDGER_BUCKETS,
        )
        self.intent_write_seconds = self._histogram(
            "intent_write_seconds",
            "From writing a send's intent to Kafka acknowledging it: what exactly-once adds to each send.",
            LEDGER_BUCKETS,
        )
        self.intents_in_doubt = self._gauge(
            "intents_in_doubt",
            "Intents without an outcome (from a crash or an unanswered request) not yet settled.",
        )
        self.ledger_entries = self._gauge(
            "ledger_entries", "Sends remembered for de-duplication, in the state store (on disk)."
        )
        self.ledger_expired = self._counter(
            "ledger_expired", "Ledger entries forgotten because their de-duplication window ended."
        )
        self.ledger_restore_remaining = self._gauge(
            "ledger_restore_remaining",
            "Changelog records left to read before the partitions being assigned can be processed.",
        )
        self.ledger_restored = self._counter(
            "ledger_restored_records",
            "Changelog records read to restore the ledger, by where the restore started: the store's "
            "checkpoint (a kept state directory: only the tail) or the beginning (an empty one).",
            ["start"],
        )
        self.ledger_disk_bytes = self._gauge("ledger_disk_bytes", "Size of the ledger's state store on disk.")

    def _return_path(self) -> None:
        self.webhook_requests = self._counter(
            "webhook_requests",
            "Webhook posts by kind (status, inbound) and result (ok, forbidden, bad_request, kafka_failed).",
            ["kind", "result"],
        )
        self.webhook_answer_seconds = self._histogram(
            "webhook_answer_seconds",
            "From a webhook post's arrival to its answer (after Kafka's ack).",
            ANSWER_BUCKETS,
        )
        self.message_status = self._counter(
            "message_status",
            "Status callbacks and replies by mapping, status (sent, delivered, undelivered, read, stop, "
            "start, …) and Twilio error code.",
            ["mapping", "status", "error_code"],
        )
        self.time_to_delivered = self._histogram(
            "time_to_delivered_seconds",
            "From the original event's timestamp to Twilio reporting the message delivered, by mapping.",
            DELIVERED_BUCKETS,
            ["mapping"],
        )
        self.suppressed_recipients = self._gauge(
            "suppressed_recipients", "Entries on the suppression list (recipient and sender scope)."
        )
        self.suppression_changes = self._counter(
            "suppression_changes",
            "Suppression list changes the receiver wrote (STOP, START, permanent failures), by action "
            "(added, removed).",
            ["action"],
        )
        self.error_code_info = self._gauge(
            "error_code_info",
            "1 for each Twilio error code the dashboard names: its meaning as a label.",
            ["error_code", "meaning"],
        )

    def name_error_codes(self, meanings: Mapping[int, str]) -> None:
        """Export `error_code_info` so dashboards can join codes to their meaning."""
        for code, meaning in meanings.items():
            self.error_code_info.labels(str(code), meaning).set(1)
