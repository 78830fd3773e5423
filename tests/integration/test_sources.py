"""A user's own events on the real broker and the real registry: records of a shop's `OrderPlaced`
schema (not Segment-shaped), written by confluent-kafka's own AvroSerializer in two versions, become
events through the mapping file's source, and are matched, rendered and sent; a path the schema does
not have stops the service at start-up with the fields that do exist."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from consumer.commands.preview import validate_main
from consumer.commands.produce import produce_events, read_events
from consumer.errors import MappingError
from consumer.events.registry import make_registry_client
from consumer.metrics import Metrics
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import Settings
from consumer.simulator import SimulatorHandle
from tests.integration.conftest import ROOT, SERVICE_SID
from tests.integration.test_registry import SERDE_CONF, produce_values
from tests.integration.test_service import run_until_idle
from tests.registry import set_compatibility

pytestmark = [
    pytest.mark.integration,
    # As in test_registry: confluent-kafka's registry client leaves a socket the registry closed.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

SCHEMAS = ROOT / "examples" / "schemas"
V1 = (SCHEMAS / "com.shop.OrderPlaced.v1.avsc").read_text()
V2 = (SCHEMAS / "com.shop.OrderPlaced.v2.avsc").read_text()


def shop_mapping(topic: str, *, phone_path: str = "properties.customer.phone", subject: bool = True) -> str:
    """The shop's source (its registry subject) and one SMS mapping reading the record's fields."""
    return textwrap.dedent(
        f"""
        version: 1
        sources:
          - name: shop-orders
            topic: {topic}
            {f"subject: {topic}-value" if subject else ""}
            event: Order Placed
            userId: customer.id
            messageId: order_id
            timestamp: placed_at
            traits: {{phone: customer.phone, locale: customer.locale}}
        mappings:
          - id: shop-order
            trigger:
              event: Order Placed
              conditions: {{path: properties.total, gt: 0}}
            channel: sms
            recipient: {{sources: [{phone_path}]}}
            sender: {{messaging_service: {SERVICE_SID}}}
            content:
              body: >-
                Order {{{{ properties.order_id }}}} {{{{ properties.total }}}} {{{{ properties.currency }}}}
                at {{{{ timestamp }}}} coupon={{{{ properties.coupon_code }}}}
            policies:
              consent: allow_unknown
        """
    )


def order(n: int, **extra: Any) -> dict[str, Any]:
    placed = dt.datetime(2026, 11, 28, 10, n, tzinfo=dt.UTC)
    customer = {"id": f"c-{n}", "phone": f"+1415555{n:04d}", "locale": "en-US" if n % 2 else None}
    return {"order_id": f"SO-{n}", "customer": customer, "total": 10.0 + n, "currency": "EUR",
            "placed_at": placed, **extra}  # fmt: skip


@pytest.fixture
def registry(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:
    with make_registry_client(schema_registry_url) as client:
        yield client


def serialize(
    client: SchemaRegistryClient, topic: str, schema: str, records: list[dict[str, Any]]
) -> list[bytes]:
    serializer = AvroSerializer(client, schema, conf=SERDE_CONF)
    context = SerializationContext(topic, MessageField.VALUE)
    return [serializer(r, context) for r in records]


async def test_records_of_a_users_own_schema_in_two_versions_are_matched_rendered_and_sent(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    service_settings: Callable[..., Settings],
    schema_registry_url: str,
    registry: SchemaRegistryClient,
    simulator: SimulatorHandle,
) -> None:
    topic = new_topic()
    set_compatibility(schema_registry_url, f"{topic}-value", "BACKWARD")
    old = serialize(registry, topic, V1, [order(n) for n in range(1, 4)])
    new = serialize(registry, topic, V2, [order(4), order(5, coupon_code="WELCOME10")])
    assert old[0][1:5] != new[0][1:5], "two schema versions, two ids"
    assert registry.get_versions(f"{topic}-value") == [1, 2]
    produce_values(kafka_bootstrap, topic, [(0, v) for v in old + new])

    settings = service_settings([topic], shop_mapping(topic), KAFKA_SCHEMA_REGISTRY_URL=schema_registry_url)
    journal, metrics = await run_until_idle(settings)

    assert [outcomes[0][1] for _, _, _, outcomes in journal] == ["sent"] * 5
    bodies = {m["To"]: m["Body"] for m in simulator.messages()}
    assert bodies == {
        # The double 11.0 prints as JavaScript prints it (11), as Segment's destination did.
        f"+1415555{n:04d}": f"Order SO-{n} {10 + n} EUR at 2026-11-28T10:{n:02d}:00Z coupon="
        + ("WELCOME10" if n == 5 else "")
        for n in range(1, 6)
    }, "version 1 records are read as version 2: coupon_code is there, null (strict templates pass)"
    decoded = {"source": "shop-orders", "result": "decoded"}
    assert metrics.registry.get_sample_value("kafka_twilio_source_records_total", decoded) == 5


async def test_a_mapping_path_the_schema_does_not_have_is_refused_at_start_up_listing_the_fields(
    new_topic: Callable[..., str],
    service_settings: Callable[..., Settings],
    schema_registry_url: str,
    registry: SchemaRegistryClient,
) -> None:
    topic = new_topic()
    serialize(registry, topic, V1, [order(1)])  # registers the versions under <topic>-value
    serialize(registry, topic, V2, [order(2)])
    mapping = shop_mapping(topic, phone_path="properties.customer.phnoe")
    settings = service_settings([topic], mapping, KAFKA_SCHEMA_REGISTRY_URL=schema_registry_url)
    service = Service(settings, Parts.real(settings), metrics=Metrics(), handle_signals=False)
    with pytest.raises(MappingError) as refused:
        await service.run()
    (problem,) = refused.value.problems
    assert "mapping 'shop-order' (through source 'shop-orders'): recipient.sources" in problem
    assert f"path 'properties.customer.phnoe' is not in subject '{topic}-value'" in problem
    assert "Did you mean 'phone'? Use one of the fields there: id, phone, locale." in problem
    assert service.metrics_port is None, "refused before serving or consuming anything"


async def test_json_records_without_a_field_their_source_reads_are_skipped_and_counted(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    service_settings: Callable[..., Settings],
    simulator: SimulatorHandle,
) -> None:
    # No schema is known for JSON records: the source's paths are checked on each record.
    topic = new_topic()
    good = {**order(1), "placed_at": "2026-11-28T10:01:00Z", "coupon_code": None}
    lacking = {k: v for k, v in good.items() if k != "order_id"}
    produce_values(kafka_bootstrap, topic, [(0, json.dumps(r).encode()) for r in (good, lacking)])
    journal, metrics = await run_until_idle(service_settings([topic], shop_mapping(topic, subject=False)))
    finished = sorted((outcomes[0][1], outcomes[0][2]) for _, _, _, outcomes in journal)
    assert finished[1] == ("skipped", "missing_field")
    assert finished[0][0] == "sent"
    skipped = {"source": "shop-orders", "result": "skipped"}
    assert metrics.registry.get_sample_value("kafka_twilio_source_records_total", skipped) == 1
    assert len(simulator.messages()) == 1


async def test_produce_writes_a_users_own_json_lines_as_avro_through_the_registry_and_they_are_sent(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    service_settings: Callable[..., Settings],
    schema_registry_url: str,
    registry: SchemaRegistryClient,
    simulator: SimulatorHandle,
) -> None:
    topic = new_topic(partitions=2)
    lines = (ROOT / "examples" / "events" / "shop-orders.jsonl").read_text().splitlines()
    count = produce_events(
        read_events(lines), bootstrap=kafka_bootstrap, topic=topic, encoding="confluent",
        registry_url=schema_registry_url, schema_file=SCHEMAS / "com.shop.OrderPlaced.v2.avsc",
        key_path="customer.id",
    )  # fmt: skip
    assert count == 2
    registered = json.loads(registry.get_latest_version(f"{topic}-value").schema.schema_str)
    assert registered["fields"][-1]["name"] == "coupon_code", "the .avsc given, registered as written"
    settings = service_settings([topic], shop_mapping(topic), KAFKA_SCHEMA_REGISTRY_URL=schema_registry_url)
    journal, _ = await run_until_idle(settings)
    assert [outcomes[0][1] for _, _, _, outcomes in journal] == ["sent", "sent"]
    assert sorted(m["Body"] for m in simulator.messages()) == [
        "Order SO-1001 42.5 EUR at 2026-11-28T10:00:00Z coupon=",
        "Order SO-1002 19.99 USD at 2026-11-28T10:05:00Z coupon=WELCOME10",
    ]


def test_validate_checks_paths_against_the_real_registrys_subject_and_names_an_unknown_one(
    tmp_path: Path,
    new_topic: Callable[..., str],
    schema_registry_url: str,
    registry: SchemaRegistryClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = new_topic()
    serialize(registry, topic, V1, [order(1)])
    path = tmp_path / "shop.yaml"
    path.write_text(shop_mapping(topic, phone_path="properties.customer.phnoe"))
    assert validate_main([str(path), "--registry-url", schema_registry_url]) == 1
    err = capsys.readouterr().err
    assert f"path 'properties.customer.phnoe' is not in subject '{topic}-value'" in err
    assert "path 'properties.coupon_code' is not in subject" in err, "only version 1 is registered"
    path.write_text(shop_mapping(f"{topic}-typo"))
    assert validate_main([str(path), "--registry-url", schema_registry_url]) == 1
    err = capsys.readouterr().err
    assert (
        f"source 'shop-orders': subject: schema subject {topic}-typo-value is not in the Schema Registry"
        in err
    )
