"""`kafka-twilio demo` as a user runs it: warnings as sentences, the summary last."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def test_the_demo_ends_with_its_summary_and_speaks_in_sentences(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "CONSUMER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"], env={**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.rstrip().splitlines()
    assert out[-1].startswith("Metrics were served at"), out[-12:]
    assert any(line.startswith("Summary: 16 of 16 records finished") for line in out)
    assert any(line.split()[:2] == ["sent", "7"] for line in out), out[-8:]
    assert any("Thanks for your order SO-1002: 19.99 USD, coupon WELCOME10 applied." in line for line in out)
    # The receiver ran too: the simulator's signed callbacks (two messages are scheduled, so only
    # five reach a final status) are counted as delivered and undelivered.
    assert any(line.split()[:2] == ["delivered", "4"] for line in out), out[-10:]
    assert any(line.split() == ["undelivered", "1", "twilio_30003:", "1"] for line in out), out[-10:]
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert warnings, "the dead-lettered record is reported"
    assert all(line.startswith(("warning: ", "error: ")) for line in warnings), warnings
    assert any("dead-lettering record: writer schema fingerprint" in line for line in warnings)


def test_the_demo_runs_on_the_schema_registry_with_demo_encoding_confluent(
    kafka_bootstrap: str, schema_registry_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "CONSUMER_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_SCHEMA_REGISTRY_URL=schema_registry_url,
               DEMO_ENCODING="confluent")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.rstrip().splitlines()
    assert any(f"confluent, through the Schema Registry at {schema_registry_url}" in line for line in out), (
        out
    )
    assert any(line.startswith("Summary: 16 of 16 records finished") for line in out)
    assert any(line.split()[:2] == ["sent", "7"] for line in out), out[-8:]
    assert any("shop orders (com.shop.OrderPlaced, confluent)" in line for line in out), out
