"""The ledger's state store: a big ledger on disk, restores fresh and from kept state, cost per message.

Run: .venv/bin/python bench/bench_ledger.py [--entries 10000000] [--restore-records 1000000]
Writes bench/results/bench_ledger.json. Three parts, in one process:

- big: `--entries` entries written through the ledger (one window for all, the oldest first), then the
  process's resident memory, the store's size on disk, and whether a duplicate of the oldest entry is
  still caught (and a new key is not).
- restore: `--restore-records` changelog records on the real broker (a fresh topic); a fresh store
  restores them all, then 1 % more are written and a store kept from the first restore reads only that
  tail. Needs the broker (KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092).
- per message: what the ledger does per send (claim, intent, sent) with the store against the in-memory
  ledger of the commit before it (`--baseline`, read from git), alternating rounds in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402  after the path set-up above
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from consumer.kafka.clients import KafkaClients  # noqa: E402
from consumer.state.changelog import TOPIC_CONFIG, Changelog  # noqa: E402
from consumer.state.ledger import INTENT, SENT, Ledger, LedgerEntry, encode_entry  # noqa: E402
from consumer.state.sent import SentState  # noqa: E402
from consumer.state.store import LedgerStore  # noqa: E402

DAY = 86_400.0
RECIPIENT = "a0db75205bcbc839035ad6c7"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def key(n: int) -> str:
    return f"{n:032x}"


def big(entries: int, workdir: Path) -> dict[str, Any]:
    """`entries` sends within one 24 h window: memory, disk, and the oldest one still caught."""
    store = LedgerStore(workdir / "big")
    ledger = Ledger(store, partitions=12)
    now = time.time()
    start, rss_before = time.perf_counter(), rss_mb()
    for n in range(entries):
        # Spread over the last 23 h, oldest first; each kept for its 24 h window, so the oldest still
        # has an hour of its window left when it is checked (writing 10M takes minutes).
        at = now - DAY + 3600 + (DAY - 3600) * n / entries
        ledger.apply(n % 12, LedgerEntry(key(n), at, at + DAY, RECIPIENT, "m1", sid=f"SM{n:032x}"))
        if n and n % 1_000_000 == 0:
            print(f"  {n:,} entries, RSS {rss_mb():.0f} MB", flush=True)
    written_s = time.perf_counter() - start
    store.flush()
    check = time.time()
    out = {
        "entries": entries,
        "write_s": round(written_s, 1),
        "entries_per_s": round(entries / written_s),
        "rss_before_mb": round(rss_before, 1),
        "rss_mb": round(rss_mb(), 1),
        "disk_mb": round(store.disk_bytes() / 1e6, 1),
        "ledger_entries": len(ledger),
        "oldest_duplicate": ledger.claim(key(0), 0, check).kind,
        "newest_duplicate": ledger.claim(key(entries - 1), (entries - 1) % 12, check).kind,
        "new_key": ledger.claim("f" * 32, 0, check).kind,
        "oldest_sid_attributed": f"SM{0:032x}" in ledger.sids,
    }
    store.close()
    return out


def produce_changelog(bootstrap: str, topic: str, start: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    now = time.time()
    for n in range(start, start + count):
        # Each send's two records: the intent, then the sent entry replacing it.
        state = INTENT if n % 2 == 0 else SENT
        entry = LedgerEntry(key(n // 2), now, now + DAY, RECIPIENT, "m1", state=state, sid=f"SM{n:032x}")
        while True:
            try:
                producer.produce(topic, key=entry.key.encode(), value=encode_entry(entry), partition=0)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 100_000 == 0:
            producer.poll(0)
    producer.flush(60)


def restore(bootstrap: str, records: int, workdir: Path) -> dict[str, Any]:
    """A fresh restore of `records` against one from a kept store plus a 1 % tail."""
    topic = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=TOPIC_CONFIG)])[topic].result(30)
    produce_changelog(bootstrap, topic, 0, records)
    clients = KafkaClients({"bootstrap.servers": bootstrap})
    producer = clients.producer({})

    def timed(path: Path) -> tuple[float, int, float]:
        state = SentState(Changelog(clients, producer, topic, 1), LedgerStore(path))
        started = time.perf_counter()
        restored = state.read([0])[0]
        elapsed = time.perf_counter() - started
        rss = rss_mb()
        state.close()
        return elapsed, restored.read, rss

    fresh_s, fresh_read, fresh_rss = timed(workdir / "restore")
    tail = max(1, records // 100)
    produce_changelog(bootstrap, topic, records, tail)
    kept_s, kept_read, _ = timed(workdir / "restore")
    admin.delete_topics([topic])
    return {
        "changelog_records": records,
        "fresh_s": round(fresh_s, 2),
        "fresh_records_read": fresh_read,
        "fresh_records_per_s": round(fresh_read / fresh_s),
        "rss_after_fresh_mb": round(fresh_rss, 1),
        "tail_records": tail,
        "kept_state_s": round(kept_s, 3),
        "kept_state_records_read": kept_read,
        "kept_over_fresh": round(kept_s / fresh_s, 4),
    }


def baseline_ledger(commit: str) -> types.ModuleType:
    """The in-memory ledger module of `commit`, loaded from git."""
    source = subprocess.run(["git", "show", f"{commit}:consumer/state/ledger.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("baseline_ledger", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_ledger"] = module  # dataclasses look their module up
    exec(compile(source, "baseline_ledger.py", "exec"), module.__dict__)  # our own file, an older version
    return module


def per_send(ledger: Any, entry_type: Any, messages: int, offset: int) -> float:
    """Microseconds per send of what the service asks the ledger: claim, intent, sent."""
    now = time.time()
    start = time.perf_counter()
    for n in range(offset, offset + messages):
        k = key(n)
        ledger.claim(k, n % 12, now)
        ledger.remember(entry_type(k, now, now + DAY, RECIPIENT, "m1", state="intent"), n % 12)
        ledger.remember(entry_type(k, now, now + DAY, RECIPIENT, "m1", sid=f"SM{n:032x}"), n % 12)
    return (time.perf_counter() - start) / messages * 1e6


def per_message(commit: str, messages: int, rounds: int, workdir: Path) -> dict[str, Any]:
    old = baseline_ledger(commit)
    memory = old.Ledger(12, max_entries=10_000_000)
    store = LedgerStore(workdir / "per-message")
    disk = Ledger(store, partitions=12)
    rows = []
    for r in range(rounds):
        rows.append({
            "round": r,
            "in_memory_us": round(per_send(memory, old.LedgerEntry, messages, r * messages), 2),
            "state_store_us": round(per_send(disk, LedgerEntry, messages, r * messages), 2),
        })  # fmt: skip
    store.close()
    best_old = min(row["in_memory_us"] for row in rows)
    best_new = min(row["state_store_us"] for row in rows)
    return {
        "baseline": commit, "messages_per_round": messages, "in_memory_us": best_old,
        "state_store_us": best_new, "added_us": round(best_new - best_old, 2), "rounds": rows,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--restore-records", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=100_000, help="per round, per ledger")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="0ada456", help="the commit whose in-memory ledger to use")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_ledger.json")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        workdir = Path(tmp)
        print("per message ...", flush=True)
        costs = per_message(args.baseline, args.messages, args.rounds, workdir)
        print(json.dumps(costs), flush=True)
        print("restore ...", flush=True)
        restored = restore(bootstrap, args.restore_records, workdir)
        print(json.dumps(restored), flush=True)
        print("big ledger ...", flush=True)
        ledger = big(args.entries, workdir)
        print(json.dumps(ledger), flush=True)
    result = {"machine": platform.machine(), "python": platform.python_version(), "ledger": ledger,
              "restore": restored, "per_message": costs}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
