"""The processes the fault suite drives: the broker, the Twilio simulator, service replicas."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

METRICS_PORT = re.compile(r"on port (\d+)")


class Broker:
    """The Kafka broker: KAFKA_BOOTSTRAP_SERVERS, or the project's local one (which can be stopped)."""

    def __init__(self, root: Path, bootstrap: str | None = None) -> None:
        self.root = root
        local = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")
        self.bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or local
        self.script = root / "deploy" / "kafka" / "local-kafka.sh"
        pidfile = Path(os.environ.get("KAFKA_STATE_DIR", root / ".local" / "kafka")) / "kafka.pid"
        # Only the broker this project started can be stopped and started again by the suite.
        self.local = self.bootstrap == local and pidfile.exists()

    def create_topic(self, topic: str, partitions: int) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)

    def _run(self, action: str) -> None:
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(["bash", str(self.script), action], env=env, check=True, capture_output=True)

    def stop(self) -> None:
        self._run("down")

    def start(self) -> None:
        self._run("up")


class Simulator:
    """The Twilio simulator as its own process; its message log is the suite's truth."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log_path = log
        self.proc: subprocess.Popen[str] | None = None
        self.base = ""
        self.info: dict[str, Any] = {}

    def start(self) -> None:
        cmd = [sys.executable, "-m", "consumer", "simulator", "--port", "0", "--latency-ms", "30",
               "--latency-jitter-ms", "15", "--validation", "schema", "--uvloop", "--seed", "11"]  # fmt: skip
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator did not start; see {self.log_path}")
        self.info = json.loads(line)
        self.base = str(self.info["simulator"])

    def twilio_env(self) -> dict[str, str]:
        from consumer.simulator.config import DEFAULT_API_KEY_SECRET

        return {
            "TWILIO_ACCOUNT_SID": str(self.info["account_sid"]),
            "TWILIO_API_KEY_SID": str(self.info["api_key_sid"]),
            "TWILIO_API_KEY_SECRET": DEFAULT_API_KEY_SECRET,
            "TWILIO_BASE_URL": self.base,
            "TWILIO_CONTENT_BASE_URL": self.base,
            "TWILIO_MESSAGING_BASE_URL": self.base,
            "TWILIO_TIMEOUT_S": "3",
        }

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method="GET" if body is None else "POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def configure(self, **changes: Any) -> None:
        self._call("/_sim/config", changes)

    def outage(self, mode: str, seconds: float | None = None) -> None:
        self._call("/_sim/outage", {"mode": mode, "seconds": seconds})

    def accepted(self) -> int:
        return int(self._call("/_sim/stats")["accepted"])

    def answers(self) -> dict[str, int]:
        """How often each answer was given: "201", "429/20429", "201/dropped", ..."""
        return dict(self._call("/_sim/stats")["answers"])

    def messages(self) -> list[dict[str, Any]]:
        return list(self._call("/_sim/messages"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class Replica:
    """`kafka-twilio run` as its own process."""

    def __init__(self, env: dict[str, str], log: Path, root: Path, *, exit_when_idle: bool) -> None:
        cmd = [
            sys.executable,
            "-m",
            "consumer",
            "run",
            *(["--exit-when-idle", "3"] if exit_when_idle else []),
        ]
        self.log_path = log
        self._log = log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._log, stderr=self._log)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
            self._log.close()
            return code
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"the last replica did not catch up in {timeout_s:.0f} s; see {self.log_path}"
            ) from None

    def _metrics_port(self) -> int | None:
        found = METRICS_PORT.search(self.log_path.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    def time_to_first_outcome(self, timeout_s: float) -> float | None:
        """Seconds from this process's start until it has finished a record (None: died or never did)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive:
            port = self._metrics_port()
            if port is not None and _finished(port) > 0:
                return time.monotonic() - self.started
            time.sleep(0.1)
        return None


def _finished(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kafka_twilio_records_finished_total{")
    )


def count_dead_letters(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=30).topics.get(topic)
    if meta is None or not meta.partitions:
        return 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions
        )
    finally:
        consumer.close()


def uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """Records after the group's committed offsets, over every partition of the topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=30)
        total = 0
        for tp in committed:
            high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)[1]
            total += high - max(tp.offset, 0)
        return total
    finally:
        consumer.close()
