"""`validate` and `preview`: every example event previews to a request Twilio's spec accepts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from consumer.commands.preview import preview_event, preview_main, record_event, validate_main
from consumer.events.model import Event
from consumer.mappings.load import load_files, load_mappings
from consumer.mappings.match import MatchIndex
from tests.twilio_contract import assert_valid_message_request, message_request_problems

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
NOW = "2026-11-28T14:00:00Z"
PAIRS = sorted(
    (path, EXAMPLES / "events" / f"{path.stem}.jsonl") for path in (EXAMPLES / "mappings").glob("*.yaml")
)
PAIRS.append((EXAMPLES / "mappings.yaml", EXAMPLES / "events.jsonl"))


def events_of(path: Path, mappings: Path | None = None) -> list[Event]:
    """The example's events: Segment-shaped, or the records of its mapping file's one source."""
    sources = load_files(mappings).sources if mappings is not None else ()
    source = sources[0] if sources else None
    lines = path.read_text(encoding="utf-8").splitlines()
    return [record_event(json.loads(line), source, n) for n, line in enumerate(lines, 1) if line.strip()]


@pytest.mark.parametrize(("mappings", "events"), PAIRS, ids=[p[0].name for p in PAIRS])
def test_every_example_event_previews_to_a_request_valid_against_twilios_spec(
    mappings: Path, events: Path
) -> None:
    index = MatchIndex(load_mappings(mappings))
    now = dt.datetime.fromisoformat(NOW)
    sends = 0
    for event in events_of(events, mappings):
        for outcome in preview_event(index, event, default_region="US", now=now):
            assert outcome.action != "dead_letter", outcome
            if outcome.message is not None:
                assert_valid_message_request(outcome.message.params)
                sends += 1
    assert sends >= 1


def test_each_single_example_sends_exactly_once() -> None:
    now = dt.datetime.fromisoformat(NOW)
    for mappings, events in PAIRS[:-1]:
        index = MatchIndex(load_mappings(mappings))
        actions = [
            o.action
            for e in events_of(events, mappings)
            for o in preview_event(index, e, default_region="US", now=now)
        ]
        assert actions == ["send"] * (2 if mappings.stem == "shop-orders" else 1), mappings.name


def test_the_contract_check_would_catch_a_broken_request() -> None:
    # Guards the acceptance test above against a checker that accepts anything.
    assert message_request_problems([("To", "+14155550123"), ("Body", "hi")])
    assert message_request_problems(
        [("To", "+14155550123"), ("From", "+14155550100"), ("ValidityPeriod", "x")]
    )


def test_the_demo_events_show_each_skip_reason() -> None:
    index = MatchIndex(load_mappings(EXAMPLES / "mappings.yaml"))
    now = dt.datetime.fromisoformat(NOW)
    reasons = {
        o.reason or o.action
        for e in events_of(EXAMPLES / "events.jsonl")
        for o in preview_event(index, e, default_region="US", now=now)
    }
    assert {
        "send",
        "unsubscribed",
        "invalid_number",
        "no_recipient",
        "condition_false",
        "audience_exited",
    } <= reasons
    assert any(
        not preview_event(index, e, default_region="US", now=now)
        for e in events_of(EXAMPLES / "events.jsonl")
    )


def test_validate_reports_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mappings:\n"
        "  - id: a\n    trigger: {event: X}\n    channel: rcs\n    sender: {phone_number: '+14155550100'}\n"
        "    content: {body: ''}\n"
        "  - id: b\n    trigger: {event: X}\n    channel: sms\n    sender: {phone_number: '+14155550100'}\n"
        "    content: {body: hi}\n    options: {send_at: {at: '{{ properties.at }}'}}\n",
        encoding="utf-8",
    )
    assert validate_main([str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        f"{bad}:5: mapping 'a': sender.phone_number: channel rcs cannot be sent from a phone_number."
        in err[0]
    )
    assert any(f"{bad}:6: mapping 'a': content.body: the body is empty" in line for line in err)
    assert any(
        f"{bad}:12: mapping 'b': options.send_at: send_at needs a Messaging Service" in line for line in err
    )
    assert err[-1] == "3 problem(s) found."


def test_validate_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_main([str(EXAMPLES / "mappings.yaml")]) == 0
    assert capsys.readouterr().out == "OK: 5 mapping(s) (5 enabled) in 1 file(s).\n"


def test_preview_prints_the_exact_request_and_the_reasons_for_not_sending(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = preview_main(
        [
            "--mappings",
            str(EXAMPLES / "mappings.yaml"),
            "--events",
            str(EXAMPLES / "events.jsonl"),
            "--now",
            NOW,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "  SEND      order-confirmation: sms to +14155550142 via toll_free, 1 segment\n" in out
    assert "            From=+18885550100\n" in out
    assert "            SendAt=2026-12-01T17:30:00Z\n            ScheduleType=fixed\n" in out
    assert "  SKIP      cart-abandoners (unsubscribed)" in out
    assert (
        "  SKIP      order-confirmation (invalid_number): context.traits.phone holds no valid number" in out
    )
    assert "  NOT FIRED order-confirmation (condition_false)" in out
    assert "  no mapping matched\n" in out
    assert out.rstrip().splitlines()[-1].startswith("13 event(s): ")


def test_preview_json_lines_carry_the_params(capsys: pytest.CaptureFixture[str]) -> None:
    events = EXAMPLES / "events" / "mms-media.jsonl"
    assert (
        preview_main(
            [
                "--mappings",
                str(EXAMPLES / "mappings" / "mms-media.yaml"),
                "--events",
                str(events),
                "--now",
                NOW,
                "--json",
            ]
        )
        == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert data["action"] == "send"
    assert data["mapping"] == "order-shipped-mms"
    assert ["MediaUrl", "https://cdn.example.com/products/lamp.jpg"] in data["params"]


def test_preview_reports_bad_lines_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('not json\n[1]\n{"type": "identify", "messageId": "x"}\n', encoding="utf-8")
    code = preview_main(
        ["--mappings", str(EXAMPLES / "mappings.yaml"), "--events", str(events), "--now", NOW]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"{events}:1: not a JSON event object" in captured.err
    assert f"{events}:2: not a JSON event object" in captured.err
    assert "event 3 (identify, messageId x)\n  no mapping matched" in captured.out


def test_preview_rejects_a_malformed_now(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        preview_main(["--mappings", "x.yaml", "--events", "e.jsonl", "--now", "tomorrow"])
    assert "--now 'tomorrow' is not an ISO-8601 time" in capsys.readouterr().err


def test_preview_with_invalid_mappings_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mappings:\n  - id: a\n", encoding="utf-8")
    assert preview_main(["--mappings", str(bad), "--events", "-", "--now", NOW]) == 1
    assert "mapping 'a': trigger: Field required" in capsys.readouterr().err


QUIET_DROP = """
version: 1
mappings:
  - id: promo
    trigger: {event: Promo}
    channel: sms
    recipient: {sources: [properties.phone]}
    sender: {messaging_service: MG55555555555555555555555555555555}
    content: {body: "20% off today"}
    policies:
      consent: allow_unknown
      quiet_hours: {start: "21:00", end: "09:00", action: drop, default_timezone: Europe/Paris}
"""


@pytest.mark.parametrize(
    ("now", "action", "reason"),
    [("2026-12-02T03:30:00Z", "skip", "quiet_hours"), ("2026-12-02T12:00:00Z", "send", "")],
)
def test_preview_at_a_time_shows_what_the_quiet_hours_gate_does_then(
    tmp_path: Path, now: str, action: str, reason: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(QUIET_DROP, encoding="utf-8")
    event = Event.from_segment({"type": "track", "event": "Promo", "messageId": "x", "userId": "u",
                                "properties": {"phone": "+33612345678"}})  # fmt: skip
    [outcome] = preview_event(
        MatchIndex(load_mappings(path)), event, default_region="US", now=dt.datetime.fromisoformat(now)
    )
    assert (outcome.action, outcome.reason) == (action, reason)
    if action == "skip":
        assert "until 2026-12-02T08:00:00Z" in outcome.detail
    else:
        assert any(
            check.startswith("quiet hours 21:00-09:00 Europe/Paris: outside") for check in outcome.checks
        )


def test_preview_shows_a_hold_by_twilio_with_the_sendat_the_service_adds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(QUIET_DROP.replace("action: drop", "action: hold"), encoding="utf-8")
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"type": "track", "event": "Promo", "messageId": "x", "userId": "u",
                                  "properties": {"phone": "+33612345678"}}) + "\n")  # fmt: skip
    assert (
        preview_main(["--mappings", str(path), "--events", str(events), "--now", "2026-12-02T03:30:00Z"]) == 0
    )
    out = capsys.readouterr().out
    assert "            SendAt=2026-12-02T08:00:00Z\n            ScheduleType=fixed\n" in out
    assert (
        "check: quiet hours 21:00-09:00 Europe/Paris: held by Twilio (SendAt) until 2026-12-02T08:00:00Z"
        in out
    )
    assert "check: dedup: skipped if" in out


def test_validate_checks_the_shop_examples_paths_against_its_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert validate_main([str(EXAMPLES / "mappings" / "shop-orders.yaml")]) == 0
    out = capsys.readouterr().out
    assert "path 'properties.coupon_code' is optional: coupon_code may be null or absent" in out
    assert "OK: 1 mapping(s) (1 enabled) and 1 source(s) in 1 file(s)" in out


def test_preview_reads_a_topics_own_records_through_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    shop = [str(EXAMPLES / "mappings" / "shop-orders.yaml")]
    events = str(EXAMPLES / "events" / "shop-orders.jsonl")
    assert (
        preview_main(["--mappings", *shop, "--events", events, "--topic", "shop.orders", "--now", NOW]) == 0
    )
    out = capsys.readouterr().out
    assert 'event 2 (track "Order Placed", messageId SO-1002)' in out
    assert "            Body=Thanks for your order SO-1002: 19.99 USD, coupon WELCOME10 applied.\n" in out
    with pytest.raises(SystemExit):
        preview_main(["--mappings", *shop, "--events", events, "--topic", "other"])
    assert (
        "no source for topic 'other'; the mapping files have: shop.orders (record com.shop.OrderPlaced)"
        in (capsys.readouterr().err)
    )
