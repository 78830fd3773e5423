"""The webhook receiver on loopback against the real broker, fed by the simulator's signed posts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from consumer.events.model import Event
from consumer.pipeline.correlation import callback_url
from consumer.settings import Settings, load_settings
from consumer.simulator import SimulatorHandle
from consumer.simulator.callbacks import twilio_signature
from consumer.state.suppression import decode_change, suppression_key
from tests.webhooks import ReceiverHandle, read_events, read_records, running_receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICE = "MG" + "5" * 32
ORIGINAL = Event.from_segment({"type": "track", "event": "Order Completed", "messageId": "evt-1",
                               "userId": "user-1", "timestamp": "2026-12-02T05:00:00Z"})  # fmt: skip


@pytest.fixture
def receiver_settings(kafka_bootstrap: str, simulator: SimulatorHandle) -> Callable[..., Settings]:
    run = uuid.uuid4().hex[:8]

    def make(**env: str) -> Settings:
        return load_settings(environ={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_STATUS_TOPIC": f"status-{run}",
            "KAFKA_SUPPRESSION_TOPIC": f"suppressions-{run}", "TWILIO_AUTH_TOKEN": simulator.auth_token,
            "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"), **env,
        })  # fmt: skip

    return make


@pytest.fixture
def receiver(receiver_settings: Callable[..., Settings]) -> Iterator[tuple[ReceiverHandle, Settings]]:
    settings = receiver_settings()
    with running_receiver(settings) as handle:
        yield handle, settings


def send(sim: SimulatorHandle, to: str, callback: str, **extra: str) -> str:
    params = {"To": to, "MessagingServiceSid": SERVICE, "Body": "hello", "StatusCallback": callback, **extra}
    answer = httpx.post(f"{sim.base_url}/2010-04-01/Accounts/{sim.account_sid}/Messages.json", data=params,
                        auth=(sim.api_key_sid, sim.api_key_secret))  # fmt: skip
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sid"])


def test_signed_callbacks_become_status_events_keyed_by_sid_and_joined_to_the_event(
    simulator: SimulatorHandle, receiver: tuple[ReceiverHandle, Settings], kafka_bootstrap: str
) -> None:
    handle, settings = receiver
    simulator.configure(status_callback_delay_ms=20, undelivered_to={"+14155550177": 30003})
    url = callback_url(handle.status_url, "order-sms", "sms", ORIGINAL)
    delivered, undelivered = send(simulator, "+14155550176", url), send(simulator, "+14155550177", url)
    events = read_events(kafka_bootstrap, settings.kafka.status_topic, 6, ROOT / "schemas")
    by_sid: dict[str, list[Event]] = {}
    for key, event in events:
        by_sid.setdefault(key, []).append(event)
    assert [e.event for e in by_sid[delivered]] == ["Message Queued", "Message Sent", "Message Delivered"]
    assert [e.event for e in by_sid[undelivered]] == ["Message Queued", "Message Sent", "Message Undelivered"]
    last = by_sid[undelivered][-1]
    assert last.properties["error_code"] == 30003
    assert last.properties["error_message"] == "unreachable destination handset"
    for _, event in events:
        assert event.user_id == "user-1"
        assert event.properties["mapping_id"] == "order-sms"
        assert event.properties["original_message_id"] == "evt-1"
        assert event.properties["messaging_service_sid"] == SERVICE
    assert handle.count("status", "ok") == 6
    assert "+1415" not in url  # the correlation carries no phone number
    delivered_count = handle.metrics.registry.get_sample_value(
        "kafka_twilio_message_status_total", {"mapping": "order-sms", "status": "delivered", "error_code": ""}
    )
    assert delivered_count == 1


def test_a_forged_or_altered_callback_is_refused_with_403_and_produces_nothing(
    receiver: tuple[ReceiverHandle, Settings], kafka_bootstrap: str
) -> None:
    handle, settings = receiver
    url = callback_url(handle.status_url, "order-sms", "sms", ORIGINAL)
    params = [("MessageSid", "SM" + "1" * 32), ("MessageStatus", "delivered"), ("To", "+14155550100")]
    altered = url.replace("order-sms", "other-mapping")  # the URL is signed too: correlation cannot be forged
    forged = [
        (url, twilio_signature("not-the-token", url, params)),
        (altered, twilio_signature("simulator-auth-token", url, params)),
        (url, ""),
    ]
    for target, signature in forged:
        answer = httpx.post(target, data=dict(params), headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 403
    signed = {"X-Twilio-Signature": twilio_signature("simulator-auth-token", url, params)}
    answer = httpx.post(url, data={**dict(params), "MessageStatus": "failed"}, headers=signed)
    assert answer.status_code == 403  # an altered parameter
    assert handle.count("status", "forbidden") == 4
    assert read_records(kafka_bootstrap, settings.kafka.status_topic, 1, timeout_s=3) == []


def test_a_callback_signed_with_the_secondary_token_passes_during_a_rotation(
    receiver_settings: Callable[..., Settings], kafka_bootstrap: str
) -> None:
    settings = receiver_settings(TWILIO_AUTH_TOKEN="new-token", TWILIO_AUTH_TOKEN_SECONDARY="old-token")
    params = [("MessageSid", "SM" + "2" * 32), ("MessageStatus", "sent"), ("To", "+14155550100")]
    with running_receiver(settings) as handle:
        for token in ("old-token", "new-token"):
            signature = twilio_signature(token, handle.status_url, params)
            answer = httpx.post(
                handle.status_url, data=dict(params), headers={"X-Twilio-Signature": signature}
            )
            assert answer.status_code == 200
        signature = twilio_signature("retired-token", handle.status_url, params)
        answer = httpx.post(handle.status_url, data=dict(params), headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 403
    assert len(read_records(kafka_bootstrap, settings.kafka.status_topic, 2)) == 2


def test_a_signed_post_that_is_not_a_status_callback_is_400_and_counted(
    receiver: tuple[ReceiverHandle, Settings],
) -> None:
    handle, _ = receiver
    params = [("MessageStatus", "sent")]
    signature = twilio_signature("simulator-auth-token", handle.status_url, params)
    answer = httpx.post(handle.status_url, data=dict(params), headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 400
    assert "MessageSid" in answer.text
    assert handle.count("status", "bad_request") == 1


def test_stop_and_start_replies_write_and_clear_the_suppression_list(
    simulator: SimulatorHandle, receiver: tuple[ReceiverHandle, Settings], kafka_bootstrap: str
) -> None:
    handle, settings = receiver
    ours, them = "+18885550100", "+14155550188"
    assert simulator.inbound(handle.inbound_url, them, ours, "STOP") == 200
    simulator.configure(advanced_opt_out=False)  # the default keywords, without OptOutType
    assert simulator.inbound(handle.inbound_url, them, ours, "start") == 200
    assert simulator.inbound(handle.inbound_url, them, ours, "What time do you open?") == 200
    changes = [decode_change(k.encode(), v) for k, v in read_records(kafka_bootstrap,
               settings.kafka.suppression_topic, 2)]  # fmt: skip
    key = suppression_key(ours, them)
    assert [(c.key, c.reason) for c in changes if c] == [(key, "stop"), (key, None)]
    assert them not in key  # the list holds a hash, not the number
    events = read_events(kafka_bootstrap, settings.kafka.status_topic, 3, ROOT / "schemas")
    assert [e.event for _, e in events] == ["Message Opted Out", "Message Opted In", "Message Received"]
    deadline = time.monotonic() + 5
    while simulator.config.stop_list and time.monotonic() < deadline:
        time.sleep(0.05)
    assert them not in simulator.config.stop_list  # the simulator's 21610 ends with START


def test_a_post_kafka_does_not_acknowledge_is_answered_503_never_200(
    receiver_settings: Callable[..., Settings],
) -> None:
    # A topic name the broker refuses: the status event cannot be written, so the post must not
    # be answered 200 (Twilio would consider it delivered and never send it again).
    settings = receiver_settings(KAFKA_STATUS_TOPIC="not a valid topic!", WEBHOOKS_ACK_TIMEOUT_S="5")
    params = [("MessageSid", "SM" + "3" * 32), ("MessageStatus", "delivered"), ("To", "+14155550100")]
    with running_receiver(settings) as handle:
        signature = twilio_signature("simulator-auth-token", handle.status_url, params)
        answer = httpx.post(handle.status_url, data=dict(params), headers={"X-Twilio-Signature": signature},
                            timeout=30)  # fmt: skip
        assert answer.status_code == 503
        assert handle.count("status", "kafka_failed") == 1
        assert handle.count("status", "ok") == 0
        assert httpx.get(f"http://127.0.0.1:{handle.port}/readyz").status_code == 503
