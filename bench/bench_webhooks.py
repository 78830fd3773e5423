"""The webhook receiver under load: signed StatusCallback posts from this process, the receiver as its
own process (`kafka-twilio webhooks`) on loopback producing to the real broker.

Closed loop and bounded: `--count` posts (each message's `sent` then `delivered`), `--concurrency`
in flight at most, signatures computed before the clock starts. Reports the answer time percentiles,
the rate, and whether anything was lost: every 200 must be a record on the status topic (produced
count = 200s answered), read back from the topic's end offsets.

    .venv/bin/python bench/bench_webhooks.py [--count 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import BOOTSTRAP, ROOT, cpu_seconds, create_topics, delete_topics, memory_kb
from yarl import URL

from consumer.events.model import Event
from consumer.pipeline.correlation import callback_url
from consumer.simulator.callbacks import twilio_signature

TOKEN = "bench-auth-token"
RESULTS = ROOT / "bench" / "results" / "bench_webhooks.json"
PERCENTILES = (50, 90, 99, 99.9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(port: int, run: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "KAFKA_STATUS_TOPIC": f"bench-status-{run}",
           "KAFKA_SUPPRESSION_TOPIC": f"bench-suppressions-{run}", "TWILIO_AUTH_TOKEN": TOKEN,
           "WEBHOOKS_HOST": "127.0.0.1", "WEBHOOKS_PORT": str(port), "CONSUMER_LOG_LEVEL": "WARNING",
           "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas")}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "consumer", "webhooks"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the receiver did not start")


def signed_posts(url_base: str, count: int) -> list[tuple[str, bytes, str]]:
    """(url, body, signature) for `count` callbacks: per message `sent` then `delivered`."""
    posts = []
    for n in range(count):
        m = n // 2
        event = Event.from_segment({"type": "track", "event": "Order Shipped", "messageId": f"evt-{m}",
                                    "userId": f"user-{m}", "timestamp": "2026-12-02T05:00:00Z"})  # fmt: skip
        url = callback_url(url_base, "order-shipped", "sms", event)
        sid = f"SM{m:032x}"
        params = [("AccountSid", "AC" + "5" * 32), ("MessageSid", sid), ("SmsSid", sid),
                  ("MessageStatus", ("sent", "delivered")[n % 2]), ("To", f"+1415555{m % 10000:04d}"),
                  ("From", "+18885550100"), ("ApiVersion", "2010-04-01")]  # fmt: skip
        posts.append((url, urlencode(params).encode(), twilio_signature(TOKEN, url, params)))
    return posts


async def drive(
    posts: list[tuple[str, bytes, str]], concurrency: int
) -> tuple[list[float], Counter[int], float]:
    """Post everything, at most `concurrency` at once; (answer times in ms, statuses, wall seconds)."""
    times: list[float] = []
    statuses: Counter[int] = Counter()
    queue = iter(posts)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with ClientSession(connector=TCPConnector(limit=concurrency), timeout=ClientTimeout(total=30)) as s:

        async def worker() -> None:
            for url, body, signature in queue:
                started = time.perf_counter()
                # encoded=True: post the URL exactly as signed, as Twilio does (yarl would re-escape it).
                target = URL(url, encoded=True)
                async with s.post(
                    target, data=body, headers={**headers, "X-Twilio-Signature": signature}
                ) as r:
                    await r.read()
                    statuses[r.status] += 1
                times.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return times, statuses, time.perf_counter() - began


def produced(topic: str) -> int:
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    out = {
        f"p{p:g}_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 2)
        for p in PERCENTILES
    }
    out["max_ms"] = round(ordered[-1], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    topics = [f"bench-status-{run}", f"bench-suppressions-{run}"]
    create_topics(admin, topics[0])
    port = free_port()
    receiver = start_receiver(port, run)
    try:
        base = f"http://127.0.0.1:{port}/twilio/status"
        warm = signed_posts(base, args.warmup)
        posts = signed_posts(base, args.warmup + args.count)[args.warmup :]
        _, warm_statuses, _ = asyncio.run(drive(warm, args.concurrency))
        cpu_before = cpu_seconds(receiver.pid)
        times, statuses, wall = asyncio.run(drive(posts, args.concurrency))
        cpu = cpu_seconds(receiver.pid) - cpu_before
        memory = memory_kb(receiver.pid)
        answered = statuses[200] + warm_statuses[200]
        records = produced(topics[0])
        result: dict[str, Any] = {
            "count": args.count, "concurrency": args.concurrency, "wall_s": round(wall, 2),
            "callbacks_per_s": round(args.count / wall), **percentiles(times),
            "answers": {str(k): v for k, v in sorted((statuses + warm_statuses).items())},
            "answered_200": answered, "produced": records, "lost": answered - records,
            "receiver_cpu_us_per_callback": round(1e6 * cpu / args.count),
            "receiver_peak_rss_kb": memory.get("VmHWM"),
        }  # fmt: skip
    finally:
        receiver.terminate()
        receiver.wait(30)
        delete_topics(admin, topics)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 and set(result["answers"]) == {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
