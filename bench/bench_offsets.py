"""Offset tracking cost: records tracked and finished out of order per second, on one core.

Finishing in reverse within windows of 1,000 (concurrent sends finish out of order) is the worst case
for a tracker that scanned per finish; the contiguous-commit tracker is amortised O(1) per record,
so the rate must not fall as the backlog grows (the 10x larger run is the check).

Run: .venv/bin/python bench/bench_offsets.py    Writes bench/results/bench_offsets.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from consumer.kafka.offsets import OffsetTracker

TP = ("events", 0)


def run(n: int, window: int = 1_000) -> float:
    tracker = OffsetTracker()
    started = time.perf_counter()
    for base in range(0, n, window):
        for offset in range(base, base + window):
            tracker.track(TP, offset)
        for offset in range(base + window - 1, base - 1, -1):
            tracker.finish(TP, offset)
    seconds = time.perf_counter() - started
    assert tracker.committable() == {TP: n}
    return n / seconds


def main() -> None:
    rows = [{"records": n, "records_per_s": round(run(n))} for n in (200_000, 2_000_000)]
    ratio = rows[1]["records_per_s"] / rows[0]["records_per_s"]
    summary = {"python": platform.python_version(), "rate_ratio_10x_backlog": round(ratio, 2)}
    summary["results"] = rows
    for row in rows:
        print(f"{row['records']:>10,} records: {row['records_per_s']:>12,} records/s (track, reverse finish)")
    print(f"rate at 10x the backlog: {ratio:.2f}x (linear time: about 1)")
    out = Path(__file__).resolve().parent / "results" / "bench_offsets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
