"""What the benchmarks share: the Kafka inputs (unique events from one encoded template, topics), the
service as its own process sampled for CPU and memory, and plain aiohttp posting forms.

Kafka: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from consumer.simulator.config import (  # noqa: E402
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_SERVICE_SID,
)

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")

# A Messaging Service sender: no per-sender rate limit in the service (Twilio queues on its side).
MAPPING = textwrap.dedent(
    f"""
    version: 1
    mappings:
      - id: order-shipped
        trigger:
          event: Order Shipped
        channel: sms
        recipient:
          sources: [properties.phone]
        sender:
          messaging_service: {DEFAULT_SERVICE_SID}
        content:
          body: "Hi {{{{ traits.first_name }}}}, order {{{{ properties.order_id }}}} has shipped."
        policies:
          consent: allow_unknown
    """
)

# Placeholders of fixed width, swapped in the encoded bytes: Avro strings are length-prefixed, so an
# equal-length substitution is a valid record, and a million of them take a second, not a minute.
USER, MSG, PHONE, ORDER = "UUUUUUUUUU", "MMMMMMMMMMMMMMMMMMMM", "+1415PPPPPPP", "OOOOOOOOOO"
TEMPLATE: dict[str, Any] = {
    "type": "track",
    "event": "Order Shipped",
    "messageId": f"msg-{MSG}",
    "userId": f"user-{USER}",
    "timestamp": "2026-11-28T10:00:00.000Z",
    "sentAt": "2026-11-28T10:00:00.120Z",
    "receivedAt": "2026-11-28T10:00:00.200Z",
    "properties": {
        "order_id": f"A-{ORDER}",
        "phone": PHONE,
        "total": 59.9,
        "currency": "EUR",
        "carrier": "UPS",
        "items": 3,
    },
    "traits": {"first_name": "Ana", "plan": "pro"},
    "context": {
        "ip": "203.0.113.7",
        "locale": "en-US",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "page": {"path": "/checkout/done", "url": "https://shop.example.com/checkout/done"},
    },
}


# -- inputs -------------------------------------------------------------------------------------------


class Events:
    """Unique Avro events (unique messageId, user and recipient) from one encoded template."""

    def __init__(self, run: str) -> None:
        from consumer.events.encode import Encoder

        self.run = run  # 6 chars: keeps message ids unique across runs sharing a ledger
        self.template = Encoder(encoding="single-object", schemas_dir=ROOT / "schemas").encode(TEMPLATE)
        for placeholder in (USER, MSG, PHONE, ORDER):
            assert self.template.count(placeholder.encode()) == 1, placeholder

    def value(self, i: int) -> bytes:
        return (
            self.template.replace(USER.encode(), f"{i:010d}".encode())
            .replace(MSG.encode(), f"{self.run}-{i:013d}".encode())
            .replace(PHONE.encode(), phone(i).encode())
            .replace(ORDER.encode(), f"{i:010d}".encode())
        )

    def key(self, i: int) -> bytes:
        return f"user-{i:010d}".encode()


def phone(i: int) -> str:
    """A valid, unique US number per i (exchanges 200-999 are valid in the NANP)."""
    return f"+1415{2_000_000 + i % 8_000_000:07d}"


def produce(events: Events, topic: str, count: int) -> float:
    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
        }
    )
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=events.value(i), key=events.key(i))
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"could not deliver all {count} records to {topic}")
    return time.perf_counter() - started


def create_topics(admin: AdminClient, *topics: str) -> None:
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics], request_timeout=30)
    for future in futures.values():
        future.result(timeout=30)


def delete_topics(admin: AdminClient, topics: list[str], group: str | None = None) -> None:
    if group is not None:
        for future in admin.delete_consumer_groups([group], request_timeout=30).values():
            # A group that never committed does not exist: nothing to delete.
            with contextlib.suppress(Exception):
                future.result(timeout=30)
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            try:
                future.result(timeout=60)
            except Exception as exc:  # noqa: BLE001  report and go on: cleanup must not hide results
                print(f"  could not delete a topic: {exc}", file=sys.stderr)


def rendered_form(events: Events) -> list[tuple[str, str]]:
    """The exact form the service sends for event 0 (decode, match, render of the real mapping)."""
    from consumer.events.decode import Decoder
    from consumer.mappings.load import load_mappings
    from consumer.mappings.match import MatchIndex
    from consumer.pipeline.render import OutboundMessage, render

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(MAPPING)
        index = MatchIndex(load_mappings(path))
    event = Decoder(schemas_dir=ROOT / "schemas", encoding="auto").decode(events.value(0))
    (mapping,) = index.match(event)
    message = render(event, mapping, default_region="US", now=datetime.now(UTC))
    assert isinstance(message, OutboundMessage), message
    return list(message.params)


def _cpu_ticks() -> tuple[int, int]:
    """(all CPU time, time the hypervisor stole) of the machine so far, in ticks (/proc/stat)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return sum(values), values[7]


_TICKS_AT_START = _cpu_ticks()


def write_result(bench: str, fields: dict[str, Any]) -> None:
    """`fields` with the run's facts (Python, CPUs, date, and the share of the machine's CPU time the
    hypervisor stole while the benchmark ran: where it is large, only same-run ratios mean much), in
    bench/results/<bench>.json."""
    (total, stolen), (total0, stolen0) = _cpu_ticks(), _TICKS_AT_START
    steal = round(100 * (stolen - stolen0) / (total - total0), 1) if total > total0 else None
    result = {"bench": bench, "python": platform.python_version(), "cpu_count": os.cpu_count(),
              "date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu_steal_pct": steal,
              **fields}  # fmt: skip
    out = ROOT / "bench" / "results" / f"{bench}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


# -- processes ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = int(value.split()[0])
    return out


def service_env(base_url: str, topic: str, run: str, mappings: Path, in_flight: int) -> dict[str, str]:
    """The service's settings for a bench run: its own topics and group, Twilio at `base_url`."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_TOPICS": topic,
        "KAFKA_GROUP_ID": f"bench-{run}",
        "KAFKA_DEAD_LETTER_TOPIC": f"bench-dlq-{run}",
        "KAFKA_DEDUP_TOPIC": f"bench-sent-{run}",
        "KAFKA_SUPPRESSION_TOPIC": f"bench-suppressions-{run}",
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_API_KEY_SID": DEFAULT_API_KEY_SID,
        "TWILIO_API_KEY_SECRET": DEFAULT_API_KEY_SECRET,
        "TWILIO_BASE_URL": base_url,
        "CONSUMER_MAPPINGS": str(mappings),
        "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"),
        "CONSUMER_METRICS_PORT": "0",
        "CONSUMER_METRICS_HOST": "127.0.0.1",
        "CONSUMER_MAX_IN_FLIGHT": str(in_flight),
        "CONSUMER_LOG_LEVEL": "WARNING",
    }


class ServiceProcess:
    """`python -m consumer.cli run` in its own process, sampled for CPU and memory while it runs."""

    def __init__(
        self, env: dict[str, str], log: Path, exit_when_idle_s: float | None, root: Path = ROOT
    ) -> None:
        cmd = [sys.executable, "-m", "consumer.cli", "run"]
        if exit_when_idle_s is not None:
            cmd += ["--exit-when-idle", str(exit_when_idle_s)]
        self.log = log.open("wb")
        # Another checkout (--compare-with) runs its own `consumer` package with this venv's libraries.
        env = {**env, "PYTHONPATH": str(root)} if root != ROOT else env
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=self.log)
        self.cpu_s = 0.0
        self.mem: dict[str, int] = {}
        self.rss_samples: list[int] = []
        self.cpu_samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds so far)

    def sample(self) -> None:
        try:
            self.cpu_s = cpu_seconds(self.proc.pid)
            self.cpu_samples.append((time.time(), self.cpu_s))
            self.mem = memory_kb(self.proc.pid)
            self.rss_samples.append(self.mem.get("VmRSS", 0))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass  # exited between two samples

    def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.sample()
            time.sleep(0.2)
        if self.proc.poll() is None:
            self.terminate()
            raise SystemExit(f"service did not finish in {timeout_s:.0f} s; see {self.log.name}")
        self.log.close()
        return self.proc.returncode

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the process spent between two wall-clock times (linear between samples): the
        steady state's cost alone, without start-up."""
        samples = self.cpu_samples

        def at(moment: float) -> float:
            for (t0, c0), (t1, c1) in itertools.pairwise(samples):
                if t0 <= moment <= t1:
                    return c0 + (c1 - c0) * (moment - t0) / (t1 - t0) if t1 > t0 else c0
            return samples[-1][1] if samples and moment > samples[-1][0] else 0.0

        return at(end) - at(start)

    def terminate(self, timeout_s: float = 40) -> int:
        self.sample()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        self.log.close()
        return code


class MinimalServer:
    """bench/minimal_server.py as its own process (`record`: keep event -> request latencies)."""

    def __init__(self, latency_ms: float = 0.0, record: bool = False) -> None:
        cmd = [sys.executable, str(ROOT / "bench" / "minimal_server.py"), "--port", "0",
               "--latency-ms", str(latency_ms)] + (["--record"] if record else [])  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.base = json.loads(self.proc.stdout.readline())["url"]

    def call(self, path: str) -> Any:
        method = "POST" if path == "/_reset" else "GET"
        request = urllib.request.Request(
            self.base + path, data=b"" if method == "POST" else None, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def arrival_rate(arrivals: list[float]) -> dict[str, float]:
    """Requests per second from the first to the last arrival, and over the middle 80% (the steady
    state alone: start-up ramp and drain tail excluded), with that window's bounds and count."""
    stamps = sorted(arrivals)
    n = len(stamps)
    if n < 2:
        return {"accepted": n, "seconds": 0.0, "msgs_per_s": 0.0, "steady_msgs_per_s": 0.0}
    span = stamps[-1] - stamps[0]
    lo, hi = stamps[n // 10], stamps[n - 1 - n // 10]
    steady = (n - 2 * (n // 10) - 1) / (hi - lo) if hi > lo else 0.0
    return {"accepted": n, "seconds": round(span, 2), "msgs_per_s": round((n - 1) / span, 1),
            "steady_msgs_per_s": round(steady, 1), "steady_from": lo, "steady_to": hi,
            "steady_count": n - 2 * (n // 10) - 1}  # fmt: skip


async def twilio_python_client(base: str, in_flight: int) -> tuple[Any, Any]:
    """The official twilio-python client on its async HTTP client, pointed at `base`: (client, http);
    close `http` after use. As shipped its ClientSession has aiohttp's default 100-connection pool:
    it is sized to `in_flight`, like the other clients measured beside it."""
    import aiohttp
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    assert http.session is not None
    await http.session.close()
    http.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))
    client = Client(DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET, DEFAULT_ACCOUNT_SID, http_client=http)
    client.api.base_url = base
    return client, http


# -- raw HTTP ceiling ---------------------------------------------------------------------------------


async def raw_http(base: str, forms: list[bytes], in_flight: int) -> dict[str, float]:
    """Plain aiohttp, `in_flight` workers each posting its next form when the previous one answers."""
    import aiohttp

    url = f"{base}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    token = base64.b64encode(f"{DEFAULT_API_KEY_SID}:{DEFAULT_API_KEY_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/x-www-form-urlencoded",
               "Accept": "application/json"}  # fmt: skip
    items: Iterator[bytes] = iter(forms)
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def worker() -> None:
            nonlocal errors
            for form in items:
                async with session.post(url, data=form, headers=headers) as response:
                    await response.json()
                    errors += response.status != 201

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {"errors": errors}
