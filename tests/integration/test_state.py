"""The ledger's state store across restarts: real broker, the simulator, the real run loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.simulator import SimulatorHandle
from tests.integration.conftest import order_event
from tests.integration.test_service import produce, run_until_idle

pytestmark = pytest.mark.integration


def restored(metrics: Metrics, start: str) -> float:
    name = "kafka_twilio_ledger_restored_records_total"
    return metrics.registry.get_sample_value(name, {"start": start}) or 0


async def test_a_restart_that_keeps_its_state_directory_reads_only_the_changelog_tail(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    topic = new_topic(partitions=2)
    kept = tmp_path / "state"
    produce(kafka_bootstrap, topic, [order_event(n) for n in range(30)])
    journal, _ = await run_until_idle(service_settings([topic], CONSUMER_STATE_DIR=kept))
    assert len(journal) == 30

    produce(kafka_bootstrap, topic, [order_event(n) for n in range(30, 40)])
    journal, metrics = await run_until_idle(service_settings([topic], CONSUMER_STATE_DIR=kept))
    assert len(journal) == 10
    assert restored(metrics, "beginning") == 0
    assert restored(metrics, "checkpoint") == 0, "every record of the first run was in the store already"

    # A new group reads every event again: a replica with the kept store and one without both know
    # all 40 sends, but only the one without reads the changelog (an intent and a sent entry each).
    for group, state_dir, start, records in (
        ("again-fresh", tmp_path / "empty", "beginning", 80),
        ("again-kept", kept, "checkpoint", 0),
    ):
        settings = service_settings([topic], CONSUMER_STATE_DIR=state_dir, KAFKA_GROUP_ID=f"{group}-{topic}")
        journal, metrics = await run_until_idle(settings)
        assert Counter(results[0][2] for *_, results in journal) == {"duplicate": 40}, group
        assert restored(metrics, start) == records, group
    assert len(simulator.messages()) == 40


async def test_a_replica_killed_under_load_and_restarted_on_its_state_directory_loses_and_repeats_nothing(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    simulator.configure(latency_ms=60, latency_jitter_ms=30)
    topic = new_topic(partitions=3)
    events = [order_event(n) for n in range(600)]
    produce(kafka_bootstrap, topic, events)
    env = {**os.environ, **service_env([topic], CONSUMER_MAX_IN_FLIGHT=32, CONSUMER_STATE_DIR=tmp_path / "s")}
    command = [sys.executable, "-m", "consumer.cli", "run"]
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)  # noqa: ASYNC220
        for _ in range(600):
            await asyncio.sleep(0.05)
            if len(simulator.messages()) >= 150 or first.poll() is not None:
                break
        assert first.poll() is None, log.read_text()[-2000:]
        first.kill()  # SIGKILL: no drain, no commit, sends and ledger writes cut off mid-way
        await asyncio.to_thread(first.wait, 30)
    assert len(simulator.messages()) < len(events), "killed under load"

    second = await asyncio.to_thread(
        subprocess.run, [*command, "--exit-when-idle", "2"], env=env, capture_output=True, timeout=180,
        check=False,
    )  # fmt: skip
    stderr = second.stderr.decode()
    assert second.returncode == 0, stderr[-2000:]
    assert "tail from" in stderr, "the restart read the changelog from its store's checkpoints"
    bodies = Counter(m["Body"] for m in simulator.messages())
    assert len(bodies) == len(events), "nothing lost"
    assert max(bodies.values()) == 1, "nothing sent twice"
