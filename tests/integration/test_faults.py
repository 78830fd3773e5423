"""The short fault-injection suite (tests/faults) on the real broker and the simulator, in CI.

SIGKILLs with restarts, a broker stop and start (when the broker is the project's local one), a 429
storm, answers lost after Twilio accepted, a Twilio outage and a scale-out and in, while events are
produced: nothing may be lost, sent twice, reordered, dead-lettered or left uncommitted. The full
version (20,000 events, eleven kills, a 90 s outage) is `make faults`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.suite import SHORT, Run

pytestmark = pytest.mark.integration


def test_the_short_fault_suite_loses_nothing_sends_nothing_twice_and_commits_everything(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    report = Run(SHORT, tmp_path, bootstrap=kafka_bootstrap).execute()
    print(report.table())
    assert report.kills == len(SHORT.kills)
    assert report.sent == SHORT.events
    assert (report.lost, report.duplicates, report.order_breaks) == (0, 0, 0), report.table()
    assert (report.dead_letters, report.uncommitted) == (0, 0), report.table()
    assert len(report.restart_to_processing_s) == report.kills, "every restarted replica processed again"
    assert report.outage_end_to_first_send_s is not None, "sending resumed after the Twilio outage"
    assert report.throttled > 0, "the storm was met while sending"
    assert report.answers_lost > 0, "the simulator dropped answers after accepting"
    assert report.in_doubt_found > 0, "the replicas found accepted messages in Twilio's list"
