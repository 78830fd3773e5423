"""The broker fixture must fail loudly, not skip, when the broker it is pointed at is not there."""

from __future__ import annotations

import pytest

from tests.kafka import BrokerUnavailable, broker_reachable, kafka_broker


def test_an_unreachable_configured_broker_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setattr("tests.kafka.broker_reachable", lambda _b, _t=0: False)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"), kafka_broker():
        pass


def test_nothing_answers_on_a_closed_port() -> None:
    assert broker_reachable("127.0.0.1:1", timeout_s=1) is False
