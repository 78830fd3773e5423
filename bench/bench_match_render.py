"""Matching + rendering throughput with 1,000 mappings, on one core.

Measures, side by side on the same event stream:
  - match via MatchIndex (trigger index + compiled conditions),
  - match via a linear scan of every mapping (the baseline the index replaces),
  - match + render (the full pure hot path: recipient, consent, Liquid, Twilio params, dedup key).

Run: .venv/bin/python bench/bench_match_render.py [--events 20000] [--mappings 1000]
Writes bench/results/bench_match_render.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from consumer.events.model import Event
from consumer.mappings.load import parse_mappings
from consumer.mappings.match import Lookup, MatchIndex, compile_condition
from consumer.mappings.model import Mapping
from consumer.pipeline.render import OutboundMessage, render

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
MS = "MG" + "0123456789abcdef" * 2
HX = "HX" + "fedcba9876543210" * 2


def build_mappings(n: int) -> tuple[Mapping, ...]:
    """A realistic mix: 60% track events, 25% audiences, 15% journey steps; half with conditions."""
    raw: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 20
        if kind < 12:
            trigger: dict[str, Any] = {"event": f"Event {i}"}
        elif kind < 17:
            trigger = {"audience": {"key": f"audience_{i}", "membership": "entered"}}
        else:
            trigger = {"journey": {"step_key": f"journey__step_{i}"}}
        if i % 2:
            trigger["conditions"] = {
                "all": [
                    {"path": "properties.total", "gte": 10},
                    {"not": {"path": "properties.test", "equals": True}},
                ]
            }
        if i % 3 == 0:
            channel, sender, content = (
                "whatsapp",
                {"messaging_service": MS},
                {
                    "content_sid": HX,
                    "variables": {
                        "1": "{{ traits.first_name | default: 'there' }}",
                        "2": "{{ properties.order_id }}",
                    },
                },
            )
        else:
            channel, sender, content = (
                "sms",
                {"phone_number": "+18885550100"},
                {
                    "body": "Hi {{ traits.first_name | default: 'there' }}, "
                    "your order {{ properties.order_id }} "
                    "of {{ properties.total }} {{ properties.currency | upcase }} is confirmed."
                },
            )
        raw.append(
            {
                "id": f"m{i}",
                "trigger": trigger,
                "channel": channel,
                "sender": sender,
                "content": content,
                "options": {
                    "status_callback": "https://hooks.example.com/s",
                    "tags": {"campaign": f"c{i % 7}"},
                },
                "policies": {"consent": "allow_unknown", "frequency_cap": {"max": 3, "per": "1d"}},
            }
        )
    mappings, problems = parse_mappings({"mappings": raw}, "bench")
    assert not problems, problems[:3]
    return mappings


def build_events(n: int, n_mappings: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for k in range(n):
        i = rng.randrange(n_mappings)
        roll = rng.random()
        base: dict[str, Any] = {
            "messageId": f"msg-{k}",
            "userId": f"user-{k % 5000}",
            "timestamp": "2026-11-28T11:59:00Z",
            "traits": {"first_name": "Grace"},
        }
        props = {"order_id": f"A-{k}", "total": 42.5, "currency": "usd", "phone": f"+1415555{k % 10000:04d}"}
        if roll < 0.2:  # matches nothing
            data = {**base, "type": "track", "event": "Page Viewed", "properties": props}
        elif i % 20 < 12:
            data = {**base, "type": "track", "event": f"Event {i}", "properties": props}
        elif i % 20 < 17:
            key = f"audience_{i}"
            data = {
                **base,
                "type": "track",
                "event": "Audience Entered",
                "properties": {**props, key: True},
                "context": {"personas": {"computation_class": "audience", "computation_key": key}},
            }
        else:
            key = f"journey__step_{i}"
            data = {
                **base,
                "type": "track",
                "event": "Journey Step",
                "properties": {**props, key: True},
                "context": {"personas": {"computation_class": "journey_step", "computation_key": key}},
            }
        out.append(Event.from_segment(data))
    return out


class LinearScan:
    """The baseline: test every mapping's trigger for every event."""

    def __init__(self, mappings: tuple[Mapping, ...]) -> None:
        self.items = [
            (m, compile_condition(m.trigger.conditions) if m.trigger.conditions else None) for m in mappings
        ]

    def match(self, event: Event) -> list[Mapping]:
        found = []
        audience, journey = event.audience, event.journey
        look = Lookup(event)
        for mapping, condition in self.items:
            t = mapping.trigger
            hit = (
                (t.event is not None and event.type == "track" and event.event in t.event)
                or (
                    t.audience is not None
                    and audience is not None
                    and audience.key == t.audience.key
                    and audience.entered
                )
                or (t.journey is not None and journey is not None and journey.step_key == t.journey.step_key)
            )
            if hit and (condition is None or condition(look)):
                found.append(mapping)
        return found


def timed(fn: Any, events: list[Event]) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for event in events:
        count += fn(event)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--mappings", type=int, default=1_000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    mappings = build_mappings(args.mappings)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = MatchIndex(mappings)
    index_s = time.perf_counter() - t0
    scan = LinearScan(mappings)
    events = build_events(args.events, args.mappings)

    def indexed(event: Event) -> int:
        return len(index.match(event))

    def linear(event: Event) -> int:
        return len(scan.match(event))

    def full(event: Event) -> int:
        sent = 0
        for mapping in index.match(event):
            sent += isinstance(render(event, mapping, default_region="US", now=NOW), OutboundMessage)
        return sent

    timed(full, events[:500])  # warm caches (phone parsing, zone lookups) the way a running service has them
    linear_events = events[: max(1, args.events // 4)]  # the scan is slow; a quarter of the stream is enough
    results = {}
    for name, fn, stream in (
        ("match_indexed", indexed, events),
        ("match_linear_scan", linear, linear_events),
        ("match_and_render", full, events),
    ):
        seconds, count = timed(fn, stream)
        results[name] = {
            "events": len(stream),
            "seconds": round(seconds, 4),
            "events_per_s": round(len(stream) / seconds),
            "results": count,
        }

    assert results["match_indexed"]["results"] == results["match_and_render"]["results"]
    ratio = results["match_indexed"]["events_per_s"] / results["match_linear_scan"]["events_per_s"]
    per_message_us = (
        results["match_and_render"]["seconds"] / max(1, results["match_and_render"]["results"]) * 1e6
    )
    summary = {
        "mappings": args.mappings,
        "load_and_compile_s": round(load_s, 3),
        "index_build_s": round(index_s, 4),
        "index_vs_linear_speedup": round(ratio, 1),
        "render_us_per_message": round(per_message_us, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }

    print(
        f"{args.mappings} mappings, loaded and compiled in {load_s:.2f} s "
        f"(index built in {index_s * 1000:.1f} ms)"
    )
    print(f"{'stage':<22}{'events':>9}{'seconds':>10}{'events/s':>12}{'matches/sent':>14}")
    for name, row in results.items():
        print(
            f"{name:<22}{row['events']:>9}{row['seconds']:>10.3f}{row['events_per_s']:>12,}{row['results']:>14}"
        )
    print(
        f"index vs linear scan: {ratio:.1f}x; "
        f"match+render: {per_message_us:.1f} µs per message sent (one core)"
    )

    out = Path(__file__).resolve().parent / "results" / "bench_match_render.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
