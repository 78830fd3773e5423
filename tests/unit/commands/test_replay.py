"""`kafka-twilio replay`'s pure parts: the record filter and the refusals that need no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.commands.replay import ReplayFilter, main, replay
from consumer.errors import SettingsError
from consumer.kafka import deadletter as dl

T0 = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)


def test_the_cli_refuses_to_replay_a_topic_into_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dead-letter-topic", "dlq", "--to-topic", "dlq"]) == 2
    assert "--to-topic must differ" in capsys.readouterr().err


def test_the_cli_rejects_a_time_that_is_not_iso_8601(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--since", "last tuesday"])
    assert exited.value.code == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("filt", "reason", "stage", "when", "accepted"),
    [
        (ReplayFilter(), "r", "send", None, True),
        (ReplayFilter(reasons=frozenset({"r"})), "r", "send", None, True),
        (ReplayFilter(reasons=frozenset({"r"})), "other", "send", None, False),
        (ReplayFilter(stages=frozenset({"decode"})), "r", "send", None, False),
        (ReplayFilter(since=T0), "r", "send", T0, True),
        (ReplayFilter(since=T0), "r", "send", T0 - timedelta(seconds=1), False),
        (ReplayFilter(until=T0), "r", "send", T0, False),
        (ReplayFilter(until=T0), "r", "send", T0 - timedelta(seconds=1), True),
        (ReplayFilter(since=T0), "r", "send", None, False),
    ],
)
def test_the_replay_filter_matches_reason_stage_and_a_half_open_time_window(
    filt: ReplayFilter, reason: str, stage: str, when: datetime | None, accepted: bool
) -> None:
    info = dl.DeadLetterInfo(
        topic="t",
        partition=0,
        offset=0,
        stage=stage,
        class_name="",
        message="",
        reason=reason,
        twilio_code=None,
        twilio_status=None,
        mapping_id=None,
        attempts=None,
        timestamp=when,
        original_headers=(),
    )
    assert filt.accepts(info, when) is accepted


def test_a_replay_into_the_dead_letter_topic_itself_is_refused() -> None:
    with pytest.raises(SettingsError, match="would loop"):
        replay(bootstrap_servers="127.0.0.1:1", dead_letter_topic="dlq", to_topic="dlq")
