"""The return path end to end: real broker, real HTTP, the service, the simulator and the receiver.

events → the service's sends → the simulator's signed status callbacks → the receiver → status events
(joined to their event and mapping) → the suppression list and fallback mappings → the service again.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from consumer.commands.replay import ReplayFilter, replay
from consumer.settings import Settings, load_settings
from consumer.simulator import SimulatorHandle
from tests.integration.conftest import ROOT, SERVICE_SID, order_event
from tests.integration.test_service import produce, run_until_idle
from tests.webhooks import ReceiverHandle, read_events, running_receiver

pytestmark = pytest.mark.integration
WA_SENDER = "+14155550155"

FALLBACK_MAPPINGS = textwrap.dedent(
    f"""
    version: 1
    mappings:
      - id: wa-offer
        trigger: {{event: Order Completed}}
        channel: whatsapp
        recipient: {{sources: [properties.phone]}}
        sender: {{phone_number: "{WA_SENDER}"}}
        content: {{body: "Order {{{{ properties.order_id }}}} is on its way"}}
        policies: {{consent: allow_unknown}}
      - id: sms-fallback          # WhatsApp undelivered -> the same news by SMS
        trigger:
          event: Message Undelivered
          conditions: {{path: properties.channel, equals: whatsapp}}
        channel: sms
        recipient: {{sources: [properties.phone]}}
        sender: {{messaging_service: {SERVICE_SID}}}
        content: {{body: "We could not reach you on WhatsApp: your order is on its way"}}
        policies: {{consent: allow_unknown}}
      - id: wa-after-sms          # the other way round: with sms-fallback, a loop if nothing stopped it
        trigger:
          event: Message Undelivered
          conditions: {{path: properties.channel, equals: sms}}
        channel: whatsapp
        recipient: {{sources: [properties.phone]}}
        sender: {{phone_number: "{WA_SENDER}"}}
        content: {{body: "We could not reach you by SMS"}}
        policies: {{consent: allow_unknown}}
    """
)


@pytest.fixture
def receiver(
    service_env: Callable[..., dict[str, str]], simulator: SimulatorHandle
) -> Iterator[tuple[ReceiverHandle, dict[str, str]]]:
    env = {**service_env(["unused"]), "TWILIO_AUTH_TOKEN": simulator.auth_token}
    with running_receiver(load_settings(environ=env)) as handle:
        yield handle, env


def settings_for(service_env: Callable[..., dict[str, str]], topics: list[str], receiver: ReceiverHandle,
                 mappings: str | None = None) -> Settings:  # fmt: skip
    extra: dict[str, Any] = {"CONSUMER_STATUS_CALLBACK_URL": receiver.status_url}
    env = service_env(topics, mappings, **extra) if mappings else service_env(topics, **extra)
    return load_settings(environ=env)


async def test_statuses_come_back_joined_to_their_event_and_undelivered_whatsapp_falls_back_to_sms_once(
    kafka_bootstrap: str, new_topic: Callable[..., str], simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]], receiver: tuple[ReceiverHandle, dict[str, str]],
) -> None:  # fmt: skip
    handle, env = receiver
    status_topic = env["KAFKA_STATUS_TOPIC"]
    new_topic(name=status_topic)
    lost, reached = "+14155550191", "+14155550192"
    simulator.configure(status_callback_delay_ms=20, whatsapp_read_rate=1.0,
                        undelivered_to={f"whatsapp:{lost}": 63016, lost: 30003})  # fmt: skip
    topic = new_topic(partitions=2)
    events = [order_event(1, phone=lost), order_event(2, phone=reached)]
    produce(kafka_bootstrap, topic, events)
    settings = settings_for(service_env, [topic, status_topic], handle, FALLBACK_MAPPINGS)
    journal, _ = await run_until_idle(settings, idle_s=3)

    sent = Counter((m["To"], m["MessagingServiceSid"] is not None) for m in simulator.messages())
    # One WhatsApp each, one SMS fallback for the lost one, and no WhatsApp again after the SMS failed.
    assert sent == {(f"whatsapp:{lost}", False): 1, (f"whatsapp:{reached}", False): 1, (lost, True): 1}
    statuses = read_events(kafka_bootstrap, status_topic, 10, ROOT / "schemas")
    chains: dict[str, list[str]] = {}
    for _, event in statuses:
        p = event.properties
        chains.setdefault(f"{p['mapping_id']}->{p['phone']}", []).append(str(p["status"]))
        # Every status is joined to the original event: its messageId, its userId, the mapping.
        original = events[0] if p["phone"] == lost else events[1]
        assert p["original_message_id"] == original["messageId"]
        assert event.user_id == original["userId"]
    assert chains == {
        f"wa-offer->{lost}": ["queued", "sent", "undelivered"],
        f"wa-offer->{reached}": ["queued", "sent", "delivered", "read"],
        f"sms-fallback->{lost}": ["queued", "sent", "undelivered"],
    }
    depths = {(e.properties["mapping_id"], e.properties["fallback_depth"]) for _, e in statuses}
    assert depths == {("wa-offer", 0), ("sms-fallback", 1)}
    outcomes = Counter(o for *_, results in journal for o in results)
    assert outcomes[("sms-fallback", "sent", "accepted")] == 1
    assert ("wa-after-sms", "sent", "queued") not in outcomes  # the loop guard held
    assert handle.count("status", "ok") == 10


async def test_a_stop_reply_suppresses_the_recipient_across_a_restart_and_start_reinstates_them(
    kafka_bootstrap: str, new_topic: Callable[..., str], simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]], receiver: tuple[ReceiverHandle, dict[str, str]],
) -> None:  # fmt: skip
    handle, _ = receiver
    phone = "+14155550193"
    topic = new_topic()
    settings = settings_for(service_env, [topic], handle)
    produce(kafka_bootstrap, topic, [order_event(1, phone=phone)])
    first, _ = await run_until_idle(settings)
    assert [r[0][1] for *_, r in first] == ["sent"]

    # The recipient replies STOP to the Messaging Service; a new service run (a restart) knows it.
    assert simulator.inbound(handle.inbound_url, phone, "+15017122661", "STOP", SERVICE_SID) == 200
    produce(kafka_bootstrap, topic, [order_event(2, phone=phone), order_event(3, phone="+14155550194")])
    second, metrics = await run_until_idle(settings)
    assert sorted(r[0][1:] for *_, r in second) == [("sent", "accepted"), ("skipped", "suppressed")]
    assert metrics.registry.get_sample_value("kafka_twilio_suppressed_recipients") == 1
    assert metrics.registry.get_sample_value("kafka_twilio_dead_letters_total", {"stage": "send",
                                             "reason": "twilio_21610"}) is None  # fmt: skip

    assert simulator.inbound(handle.inbound_url, phone, "+15017122661", "START", SERVICE_SID) == 200
    produce(kafka_bootstrap, topic, [order_event(4, phone=phone)])
    third, _ = await run_until_idle(settings)
    assert [r[0][1:] for *_, r in third] == [("sent", "accepted")]
    assert sum(m["To"] == phone for m in simulator.messages()) == 2


async def test_a_21610_dead_letter_replayed_after_the_refusal_is_skipped_as_suppressed(
    kafka_bootstrap: str, new_topic: Callable[..., str], simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]], receiver: tuple[ReceiverHandle, dict[str, str]],
) -> None:  # fmt: skip
    handle, _ = receiver
    phone = "+14155550195"
    simulator.configure(stop_list={phone})  # opted out at Twilio before the list knew it
    topic = new_topic()
    settings = settings_for(service_env, [topic], handle)
    produce(kafka_bootstrap, topic, [order_event(1, phone=phone)])
    first, _ = await run_until_idle(settings)
    assert [r[0][1:] for *_, r in first] == [("dead_lettered", "twilio_21610")]
    only_21610 = ReplayFilter(reasons=frozenset({"twilio_21610"}))
    summary = replay(bootstrap_servers=kafka_bootstrap, dead_letter_topic=settings.kafka.dead_letter_topic,
                     record_filter=only_21610, idle_timeout_s=5)  # fmt: skip
    assert summary.replayed == 1
    again, _ = await run_until_idle(settings)
    assert [r[0][1:] for *_, r in again] == [("skipped", "suppressed")]
    assert sum(m["To"] == phone for m in simulator.messages()) == 0
