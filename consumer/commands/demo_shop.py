"""The demo's second stream: a shop's own order events (`examples/schemas/com.shop.OrderPlaced.v2.avsc`,
not Segment-shaped) on their own topic, read through the source in `examples/mappings/shop-orders.yaml`.

The demo's topics are fresh each run, so the source's topic is rewritten into a combined mapping file
(the demo's mappings plus the shop's source and mapping) in a scratch directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHOP_MAPPINGS = ROOT / "examples" / "mappings" / "shop-orders.yaml"
SHOP_RECORDS = ROOT / "examples" / "events" / "shop-orders.jsonl"


@dataclass(frozen=True)
class ShopStream:
    topic: str
    mappings: Path  # the combined mapping file
    produced: int
    encoding: str


def combined_mappings(demo: Path, topic: str, scratch: Path) -> Path:
    """The demo's mapping file plus the shop's source (on `topic`) and mapping, written to `scratch`."""
    base: dict[str, Any] = yaml.safe_load(demo.read_text(encoding="utf-8")) or {}
    shop: dict[str, Any] = yaml.safe_load(SHOP_MAPPINGS.read_text(encoding="utf-8"))
    sources = []
    for source in shop["sources"]:
        schema = (SHOP_MAPPINGS.parent / source["schema"]).resolve()
        sources.append({**source, "topic": topic, "schema": str(schema)})
    merged = {**base, "sources": [*(base.get("sources") or []), *sources],
              "mappings": [*(base.get("mappings") or []), *shop["mappings"]]}  # fmt: skip
    path = scratch / "demo-mappings.yaml"
    path.write_text(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def produce_shop_orders(
    bootstrap: str, topic: str, *, demo_mappings: Path, scratch: Path, registry_url: str
) -> ShopStream:
    """Produce the shop's orders (Avro through the registry when there is one, else their JSON)."""
    from consumer.commands.produce import produce_events

    schema = SHOP_MAPPINGS.parent / yaml.safe_load(SHOP_MAPPINGS.read_text())["sources"][0]["schema"]
    records = [json.loads(line) for line in SHOP_RECORDS.read_text().splitlines() if line.strip()]
    encoding = "confluent" if registry_url else "json"
    produced = produce_events(
        records, bootstrap=bootstrap, topic=topic, encoding=encoding, registry_url=registry_url,
        schema_file=schema.resolve(), key_path="customer.id",
    )  # fmt: skip
    return ShopStream(topic, combined_mappings(demo_mappings, topic, scratch), produced, encoding)
