"""The fault-injection suite: the service as its own processes, under load, while things break.

    .venv/bin/python -m tests.faults.suite [--short] [--json FILE]      (make faults / make faults-short)

Against the real broker and the Twilio simulator (its own process, whose message log is the truth),
a timeline of faults runs while events are produced at a steady rate: SIGKILLs of replicas (restarted
with the same static group instance id), a broker stop/start, a 429 storm, answers lost after Twilio
accepted (dropped connections, truncated answers), a Twilio outage (503 to everything, then connection
refused), and a scale-out and scale-in of replicas. Then one replica runs until the group has committed
everything, and the run is judged from the simulator's log and Kafka's committed offsets: lost records,
duplicate sends, per-recipient order breaks, dead letters, uncommitted offsets, how soon a restarted
replica processes again, and how soon sending resumes after the outage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.parts import Broker, Replica, Simulator, count_dead_letters, uncommitted

ROOT = Path(__file__).resolve().parents[2]
# The suite's own producer complains while the broker is down on purpose: that is the point.
QUIET = logging.getLogger("faults.librdkafka")
QUIET.setLevel(logging.CRITICAL)
LASTING = ("broker down", "Twilio outage")
SERVICE_SID = "MG" + "7" * 32
MAPPING = f"""
version: 1
mappings:
  - id: order-sms
    trigger: {{event: Order Completed}}
    channel: sms
    recipient: {{sources: [properties.phone]}}
    sender: {{messaging_service: {SERVICE_SID}}}
    content: {{body: "Order {{{{ properties.order_id }}}} seq {{{{ properties.seq }}}}"}}
    policies: {{consent: allow_unknown}}
"""


@dataclass(frozen=True)
class Scenario:
    """How much load, and which faults when (seconds from the start)."""

    name: str
    events: int
    recipients: int
    partitions: int
    rate: float  # events produced per second
    in_flight: int
    kills: tuple[float, ...]  # when a running replica is SIGKILLed (and restarted at once)
    broker_outage: tuple[float, float] | None  # (at, seconds)
    storm: tuple[float, float] | None  # (at, seconds) of a 429 storm
    lost_answers: tuple[float, float] | None  # (at, seconds) of answers lost after accepting
    twilio_outage: tuple[float, float, float] | None  # (at, seconds of 503, seconds refused)
    scale: tuple[tuple[float, int], ...] = ()  # (at, replicas)


# The faults take turns (a broker takes a while to start again, so its outage comes last): each is
# then seen on its own, while the replicas are sending.
FULL = Scenario(
    "full", events=20_000, recipients=2_000, partitions=4, rate=110, in_flight=32,
    kills=tuple(4.0 + 4 * n for n in range(11)), storm=(50, 10), lost_answers=(64, 15),
    twilio_outage=(84, 45, 45), scale=((180, 3), (200, 1)), broker_outage=(210, 15),
)  # fmt: skip
SHORT = Scenario(
    "short", events=3_000, recipients=300, partitions=4, rate=65, in_flight=64,
    kills=(3.0, 6.5, 10.0), storm=(13, 3), lost_answers=(17, 4), twilio_outage=(23, 6, 3),
    scale=((34, 2), (40, 1)), broker_outage=(44, 4),
)  # fmt: skip


@dataclass
class Report:
    scenario: str
    events: int
    sent: int = 0
    lost: int = 0
    duplicates: int = 0
    order_breaks: int = 0
    dead_letters: int = 0
    uncommitted: int = 0
    kills: int = 0
    restart_to_processing_s: list[float] = field(default_factory=list)
    outage_end_to_first_send_s: float | None = None
    broker_down_s: float = 0.0  # from the stop until the broker answered again (0: not stopped)
    throttled: int = 0  # 429 answers in the storm
    answers_lost: int = 0  # accepted by the simulator, the answer never reached the replica
    in_doubt_found: int = 0  # settled by Twilio's list: it had the message, not sent again
    in_doubt_sent: int = 0  # settled by Twilio's list: it had none, sent
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicates or self.order_breaks or self.dead_letters or self.uncommitted
        )

    def table(self) -> str:
        recovery = self.restart_to_processing_s
        rows = [
            ("events produced", f"{self.events:,}"), ("messages sent", f"{self.sent:,}"),
            ("lost", self.lost), ("duplicate sends", self.duplicates), ("order breaks", self.order_breaks),
            ("dead letters", self.dead_letters), ("uncommitted offsets", self.uncommitted),
            ("SIGKILLs", self.kills),
            ("restart -> processing, max / median",
             f"{max(recovery, default=0):.1f} s / {statistics.median(recovery) if recovery else 0:.1f} s"),
            ("Twilio back -> first send", f"{self.outage_end_to_first_send_s or 0:.1f} s"),
            ("broker down, stop to answering again",
             f"{self.broker_down_s:.0f} s" if self.broker_down_s else "no (not the local broker)"),
            ("429 answers in the storm", f"{self.throttled:,}"),
            ("answers lost after accepting", self.answers_lost),
            ("in doubt, found in Twilio's list / not found and sent",
             f"{self.in_doubt_found} / {self.in_doubt_sent}"),
            ("wall time", f"{self.wall_s:.0f} s"),
        ]  # fmt: skip
        return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


class Run:
    """One scenario, start to finish."""

    def __init__(self, scenario: Scenario, workdir: Path, bootstrap: str | None = None) -> None:
        self.s = scenario
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.topic = f"faults-{self.run_id}"
        self.group = f"faults-{self.run_id}"
        self.broker = Broker(ROOT, bootstrap)
        self.sim = Simulator(ROOT, workdir / "simulator.log")
        self.replicas: dict[int, Replica] = {}
        self.report = Report(scenario.name, scenario.events)
        self.rng = random.Random(7)
        self.started = 0.0
        self.started_replicas = 0

    def env(self, slot: int) -> dict[str, str]:
        mappings = self.workdir / "mappings.yaml"
        mappings.write_text(MAPPING)
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "CONSUMER_", "KAFKA_"))},
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap, "KAFKA_TOPICS": self.topic,
            "KAFKA_GROUP_ID": self.group, "KAFKA_GROUP_INSTANCE_ID": f"replica-{slot}",
            "KAFKA_SESSION_TIMEOUT_MS": "10000",
            "KAFKA_DEAD_LETTER_TOPIC": f"{self.topic}.dlq", "KAFKA_DEDUP_TOPIC": f"{self.topic}.sent",
            "KAFKA_SUPPRESSION_TOPIC": f"{self.topic}.suppressions",
            **self.sim.twilio_env(),
            "CONSUMER_MAPPINGS": str(mappings), "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"),
            "CONSUMER_METRICS_PORT": "0", "CONSUMER_METRICS_HOST": "127.0.0.1", "CONSUMER_LOG_LEVEL": "INFO",
            "CONSUMER_MAX_IN_FLIGHT": str(self.s.in_flight), "CONSUMER_RETRY_BASE_S": "0.1",
            "CONSUMER_RETRY_CAP_S": "2", "CONSUMER_RECONCILE_DELAY_S": "1", "CONSUMER_DRAIN_GRACE_S": "5",
        }  # fmt: skip

    def start_replica(self, slot: int, *, exit_when_idle: bool = False) -> Replica:
        self.started_replicas += 1
        log = self.workdir / f"replica-{slot}-{self.started_replicas}.log"
        replica = Replica(self.env(slot), log, ROOT, exit_when_idle=exit_when_idle)
        self.replicas[slot] = replica
        return replica

    def at(self, offset_s: float) -> None:
        """Sleep until `offset_s` seconds after the start."""
        time.sleep(max(0.0, self.started + offset_s - time.monotonic()))

    def execute(self) -> Report:
        self.broker.create_topic(self.topic, self.s.partitions)
        self.sim.start()
        producing = threading.Thread(target=self.produce, daemon=True)
        self.started = time.monotonic()
        producing.start()
        self.start_replica(0)
        for when, name, action in sorted(self.timeline(), key=lambda step: step[0]):
            self.at(when)
            print(f"faults: {time.monotonic() - self.started:6.1f} s  {name}", file=sys.stderr, flush=True)
            # Faults that last run beside the timeline, so they overlap as they would in production.
            if name.startswith(LASTING):
                threading.Thread(target=action, name=f"fault {name}", daemon=True).start()
            else:
                action()
        producing.join()
        for thread in threading.enumerate():
            if thread.name.startswith("fault"):
                thread.join()
        self.finish()
        self.report.wall_s = time.monotonic() - self.started
        return self.report

    def timeline(self) -> list[tuple[float, str, Any]]:
        s = self.s
        steps: list[tuple[float, str, Any]] = [(t, "SIGKILL a replica", self.kill) for t in s.kills]
        if s.broker_outage and self.broker.local:
            at, seconds = s.broker_outage
            steps.append((at, f"broker down for {seconds:g} s", lambda: self.broker_outage(seconds)))
        if s.storm:
            storm, calm = {"max_concurrency": 2, "retry_after_s": 0.2}, {"max_concurrency": 0}
            steps += [
                (s.storm[0], "429 storm", lambda: self.sim.configure(**storm)),
                (sum(s.storm), "429 storm over", lambda: self.sim.configure(**calm)),
            ]
        if s.lost_answers:
            lose = {"drop_after_accept_rate": 0.05, "truncate_rate": 0.03}
            keep = {"drop_after_accept_rate": 0, "truncate_rate": 0}
            steps += [
                (s.lost_answers[0], "answers lost after accepting", lambda: self.sim.configure(**lose)),
                (sum(s.lost_answers), "answers kept again", lambda: self.sim.configure(**keep)),
            ]
        if s.twilio_outage:
            steps.append((s.twilio_outage[0], "Twilio outage (503, then refused)", self.twilio_outage))
        steps += [(when, f"scale to {n}", lambda n=n: self.scale(n)) for when, n in s.scale]
        return steps

    def produce(self) -> None:
        from confluent_kafka import Producer

        from consumer.events.encode import Encoder

        encoder = Encoder(encoding="single-object", schemas_dir=ROOT / "schemas")
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 300_000, "logger": QUIET})  # fmt: skip
        seq: dict[int, int] = defaultdict(int)
        for n in range(self.s.events):
            r = n % self.s.recipients
            seq[r] += 1
            event = {"type": "track", "event": "Order Completed", "messageId": f"{self.run_id}-{n}",
                     "userId": f"user-{r}", "properties": {"order_id": f"E{n}", "seq": seq[r],
                                                           "phone": f"+1415555{r:04d}"}}  # fmt: skip
            producer.produce(self.topic, encoder.encode(event), f"user-{r}".encode())
            producer.poll(0)
            time.sleep(max(0.0, self.started + (n + 1) / self.s.rate - time.monotonic()))
        producer.flush(300)

    # -- faults -------------------------------------------------------------------------------------

    def kill(self) -> None:
        running = [slot for slot, r in self.replicas.items() if r.alive]
        if not running:
            return
        slot = self.rng.choice(running)
        self.replicas[slot].kill()
        self.report.kills += 1
        replica = self.start_replica(slot)
        threading.Thread(target=lambda: self.watch_recovery(replica), daemon=True).start()

    def watch_recovery(self, replica: Replica) -> None:
        took = replica.time_to_first_outcome(timeout_s=120)
        if took is not None:
            self.report.restart_to_processing_s.append(round(took, 2))

    def broker_outage(self, seconds: float) -> None:
        stopped = time.monotonic()
        self.broker.stop()
        time.sleep(seconds)
        self.broker.start()  # returns once the broker answers
        self.report.broker_down_s = round(time.monotonic() - stopped, 1)

    def twilio_outage(self) -> None:
        _, unavailable, refused = self.s.twilio_outage  # type: ignore[misc]
        self.sim.outage("503")
        time.sleep(unavailable)
        self.sim.outage("refuse", refused)
        time.sleep(refused + 0.1)
        back = time.monotonic()
        before = self.sim.accepted()
        while self.sim.accepted() == before and time.monotonic() - back < 120:
            time.sleep(0.1)
        self.report.outage_end_to_first_send_s = round(time.monotonic() - back, 2)

    def scale(self, replicas: int) -> None:
        for slot in range(replicas):
            if slot not in self.replicas or not self.replicas[slot].alive:
                self.start_replica(slot)
        for slot in sorted(self.replicas):
            if slot >= replicas and self.replicas[slot].alive:
                self.replicas[slot].stop()

    # -- the verdict --------------------------------------------------------------------------------

    def finish(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        last = self.start_replica(0, exit_when_idle=True)
        last.wait(timeout_s=600)
        self.judge()
        self.sim.stop()

    def judge(self) -> None:
        messages = self.sim.messages()
        counts: dict[str, int] = defaultdict(int)
        last_seq: dict[str, int] = {}
        for m in messages:
            body = str(m.get("Body") or "")
            counts[body] += 1
            seq = int(body.rsplit(" ", 1)[-1]) if body else 0
            if seq < last_seq.get(str(m.get("To")), 0):
                self.report.order_breaks += 1
            last_seq[str(m.get("To"))] = max(seq, last_seq.get(str(m.get("To")), 0))
        produced = {f"Order E{n} seq" for n in range(self.s.events)}
        bodies = {b.rsplit(" ", 1)[0] for b in counts}
        self.report.sent = len(counts)
        self.report.duplicates = sum(n - 1 for n in counts.values())
        self.report.lost = len(produced - bodies)
        self.report.dead_letters = count_dead_letters(self.broker.bootstrap, f"{self.topic}.dlq")
        self.report.uncommitted = uncommitted(self.broker.bootstrap, self.group, self.topic)
        answers = self.sim.answers()
        self.report.throttled = answers.get("429/20429", 0)
        self.report.answers_lost = answers.get("201/dropped", 0) + answers.get("201/truncated", 0)
        for log in self.workdir.glob("replica-*.log"):
            text = log.read_text(errors="replace")
            self.report.in_doubt_found += text.count("in doubt: Twilio has it")
            self.report.in_doubt_sent += text.count("in doubt: Twilio has none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI version (under two minutes)")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--workdir", type=Path, help="keep the processes' logs here (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    scenario = SHORT if args.short else FULL
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = Run(scenario, args.workdir).execute()
    else:
        with tempfile.TemporaryDirectory(prefix="kafka-twilio-faults-") as tmp:
            report = Run(scenario, Path(tmp)).execute()
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2) + "\n")
    print("\nOK: nothing lost, nothing sent twice" if report.ok else "\nFAILED", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
