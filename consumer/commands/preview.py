"""`kafka-twilio validate` and `kafka-twilio preview`: check mappings and dry-run events, sending nothing.

`preview_event` shows what the service would do with an event at a given time: it runs the same
`consumer.pipeline.handle.decide` the service runs, then the quiet-hours gate at that time (held by
Twilio, held in memory, or dropped). The gates that depend on earlier sends (de-duplication,
frequency caps, sender rates) are listed as the checks the service will make.

With `--topic`, the lines are the user's own records of that topic and the mapping file's source for
it makes them events, as the service's decoder does (line N is offset N-1 of partition 0). `validate`
checks every path of the sources, and of the mappings they fire, against the writer schemas it can
find (a source's `schema:` file, `--schemas-dir`, the subjects of `--registry-url`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from consumer.errors import MappingError, RecordRef, SourceFieldMissing
from consumer.events.model import Event
from consumer.events.schemas import READER_FILE, LocalSchemas
from consumer.events.sources import Source, Sources, to_event
from consumer.mappings.load import Loaded, load_files
from consumer.mappings.match import MatchIndex
from consumer.mappings.paths import Findings, check_loaded
from consumer.pipeline.gates import quiet_hours
from consumer.pipeline.handle import Fail, Send, decide
from consumer.pipeline.message import OutboundMessage
from consumer.pipeline.schedule import schedule_params

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
LABELS = {"not_fired": "NOT FIRED", "skip": "SKIP", "dead_letter": "DEAD-LETTER"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one mapping would do with one event at the preview's time."""

    mapping_id: str
    action: str  # "send" | "skip" | "dead_letter" | "not_fired"
    reason: str = ""  # the service's bounded reason label for skip / dead_letter / not_fired
    detail: str = ""
    message: OutboundMessage | None = None
    checks: tuple[str, ...] = ()  # the gates applied when sending, as the service will apply them


def preview_event(
    index: MatchIndex, event: Event, *, default_region: str, now: dt.datetime, strict_numbers: bool = False
) -> list[Outcome]:
    """Every mapping the index considers for `event`: the request it would send at `now`, or why not."""
    outcomes: list[Outcome] = []
    for verdict in index.explain(event):
        mapping = verdict.mapping
        if verdict.reason is not None:
            outcomes.append(Outcome(mapping.id, "not_fired", verdict.reason))
            continue
        decision = decide(
            event, mapping, default_region=default_region, now=now, strict_numbers=strict_numbers
        )
        if isinstance(decision, Send):
            outcomes.append(_at(decision.message, now))
        elif isinstance(decision, Fail):
            outcomes.append(Outcome(mapping.id, "dead_letter", decision.error.reason, decision.error.message))
        else:
            outcomes.append(Outcome(mapping.id, "skip", decision.reason, decision.detail))
    return outcomes


def _at(message: OutboundMessage, now: dt.datetime) -> Outcome:
    """The send path's outcome for `message` at `now`: quiet hours applied, the stateful gates listed."""
    checks: list[str] = []
    quiet = quiet_hours(message, now)
    qh = message.quiet_hours
    if qh is not None:
        zone = f"{qh.start:%H:%M}-{qh.end:%H:%M} {message.timezone}"
        if quiet is None:
            checks.append(f"quiet hours {zone}: outside them at {now:%Y-%m-%dT%H:%M:%SZ}")
        elif quiet.drop:
            detail = f"inside quiet hours {zone} until {quiet.until:%Y-%m-%dT%H:%M:%SZ}; the mapping drops"
            return Outcome(message.mapping_id, "skip", "quiet_hours", detail)
        elif quiet.schedule:
            message = dataclasses.replace(message, params=(*message.params, *schedule_params(quiet.until)))
            checks.append(
                f"quiet hours {zone}: held by Twilio (SendAt) until {quiet.until:%Y-%m-%dT%H:%M:%SZ}"
            )
        else:
            checks.append(f"quiet hours {zone}: held in memory until {quiet.until:%Y-%m-%dT%H:%M:%SZ}")
    if message.dedup_key:
        checks.append(
            f"dedup: skipped if {message.dedup_key!r} was sent in the last {message.dedup_window_s:g}s"
        )
    if message.frequency_cap is not None:
        cap = message.frequency_cap
        checks.append(f"frequency cap: skipped after {cap.limit} per {cap.window_s:g}s ({cap.scope})")
    checks.append(f"sender rate: paced per {message.sender_kind} sender")
    return Outcome(message.mapping_id, "send", message=message, checks=tuple(checks))


def _describe(event: Event) -> str:
    name = f' "{event.event}"' if event.event else ""
    return f"{event.type or '?'}{name}, messageId {event.message_id or '?'}"


def _print_outcome(outcome: Outcome, out: TextIO) -> None:
    message = outcome.message
    if message is None:
        detail = f": {outcome.detail}" if outcome.detail else ""
        print(f"  {LABELS[outcome.action]:9} {outcome.mapping_id} ({outcome.reason}){detail}", file=out)
        return
    plural = "s" if message.segments != 1 else ""
    what = f"{message.channel} to {message.to} via {message.sender_kind}, {message.segments} segment{plural}"
    print(f"  SEND      {outcome.mapping_id}: {what}", file=out)
    print(f"            POST {MESSAGES_PATH}", file=out)
    for key, value in message.params:
        print(f"            {key}={value}", file=out)
    for check in outcome.checks:
        print(f"            check: {check}", file=out)


def _outcome_json(number: int, outcome: Outcome) -> dict[str, object]:
    data: dict[str, object] = {"event": number, "mapping": outcome.mapping_id, "action": outcome.action}
    if outcome.reason:
        data["reason"] = outcome.reason
    if outcome.detail:
        data["detail"] = outcome.detail
    if outcome.message is not None:
        data["params"] = [list(p) for p in outcome.message.params]
        data["segments"] = outcome.message.segments
        data["dedup_key"] = outcome.message.dedup_key
        data["checks"] = list(outcome.checks)
    return data


def _read_events(path: str) -> Iterator[tuple[int, str]]:
    handle = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def record_event(data: dict[str, object], source: Source | None, number: int) -> Event:
    """The event a JSON line becomes: Segment-shaped, or made by `source` (SourceFieldMissing)."""
    if source is None:
        return Event.from_segment(data)
    return to_event(data, source, RecordRef(source.topic, 0, number - 1))


def pick_source(loaded: Loaded, topic: str | None, record: str | None) -> Source | None:
    """The source `--topic` (and `--record`) name; ValueError listing the choices when there is none."""
    if topic is None:
        return None
    sources = Sources(loaded.sources)
    source = sources.pick(topic, record)
    if source is None:
        known = ", ".join(f"{s.topic} (record {s.record})" if s.record else s.topic for s in loaded.sources)
        raise ValueError(
            f"no source for topic {topic!r}{f' and record {record!r}' if record else ''}; "
            f"the mapping files have: {known or 'no sources'}"
        )
    return source


def _load(paths: Sequence[str], err: TextIO) -> Loaded | None:
    try:
        return load_files(*(Path(p) for p in paths))
    except MappingError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"{len(exc.problems)} problem(s) found.", file=err)
        return None


def _now(parser: argparse.ArgumentParser, text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.now(dt.UTC)
    try:
        now = dt.datetime.fromisoformat(text)
    except ValueError:
        parser.error(f"--now {text!r} is not an ISO-8601 time, e.g. 2026-03-02T10:00:00Z")
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def validate_main(argv: list[str]) -> int:
    """Check mapping files and report every problem at once; exit 1 when there is any."""
    parser = argparse.ArgumentParser(prog="kafka-twilio validate", description=validate_main.__doc__)
    parser.add_argument("mappings", nargs="+", metavar="MAPPINGS", help="mapping YAML file(s)")
    parser.add_argument("--schemas-dir", type=Path, default=Path("schemas"), help="local Avro schemas")
    parser.add_argument(
        "--registry-url",
        default=os.environ.get("KAFKA_SCHEMA_REGISTRY_URL", ""),
        help="Schema Registry whose subjects the sources name (default: KAFKA_SCHEMA_REGISTRY_URL)",
    )
    args = parser.parse_args(argv)
    loaded = _load(args.mappings, sys.stderr)
    if loaded is None:
        return 1
    mappings = loaded.mappings
    enabled = sum(m.enabled for m in mappings)
    if not loaded.sources:
        print(f"OK: {len(mappings)} mapping(s) ({enabled} enabled) in {len(args.mappings)} file(s).")
        return 0
    findings = check_sources(loaded, args.schemas_dir, args.registry_url)
    for note in findings.notes:
        print(f"note: {note}")
    for problem in findings.problems:
        print(problem, file=sys.stderr)
    if findings.problems:
        print(f"{len(findings.problems)} problem(s) found.", file=sys.stderr)
        return 1
    print(
        f"OK: {len(mappings)} mapping(s) ({enabled} enabled) and {len(loaded.sources)} source(s) in "
        f"{len(args.mappings)} file(s); every path checked where the writer schema is known."
    )
    return 0


def check_sources(loaded: Loaded, schemas_dir: Path, registry_url: str) -> Findings:
    """The path check `validate` runs: the local schemas and, when given, the registry's subjects."""
    from consumer.events.registry import RegistrySchemas, make_registry_client

    local = LocalSchemas.load(schemas_dir) if (schemas_dir / READER_FILE).is_file() else None
    registry = RegistrySchemas(make_registry_client(registry_url), attempts=1) if registry_url else None
    try:
        return check_loaded(loaded, Sources(loaded.sources), local, registry)
    finally:
        if registry is not None:
            registry.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kafka-twilio preview", description=preview_main.__doc__)
    parser.add_argument("--mappings", required=True, nargs="+", action="extend", help="mapping YAML file(s)")
    parser.add_argument(
        "--events",
        required=True,
        help="Segment events, or with --topic that topic's own records: a JSON object a line (- = stdin)",
    )
    parser.add_argument("--topic", help="read the lines as records of this topic, through its source")
    parser.add_argument("--record", help="the Avro record name, when the topic has a source per record")
    parser.add_argument("--default-region", default="US", help="region for numbers without a country code")
    parser.add_argument("--now", help="what the service would do at this time, ISO-8601 (default: now)")
    parser.add_argument(
        "--phone-validation", choices=("possible", "strict"), default="possible",
        help="as CONSUMER_PHONE_VALIDATION: strict also needs phonenumbers' validity",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object per outcome")
    return parser


def preview_main(argv: list[str]) -> int:
    """Show which mappings fire for each event and the exact Twilio request each would send."""
    parser = _parser()
    args = parser.parse_args(argv)
    now = _now(parser, args.now)
    loaded = _load(args.mappings, sys.stderr)
    if loaded is None:
        return 1
    try:
        source = pick_source(loaded, args.topic, args.record)
        lines = list(_read_events(args.events))
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    index = MatchIndex(loaded.mappings)
    totals: Counter[str] = Counter()
    bad_lines = 0
    for number, line in lines:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            bad_lines += 1
            print(f"{args.events}:{number}: not a JSON event object ({exc}); skipped", file=sys.stderr)
            continue
        try:
            event = record_event(data, source, number)
        except SourceFieldMissing as exc:
            totals[f"skip:{exc.reason}"] += 1
            print(f"record {number}: SKIP ({exc.reason}): {exc.message}")
            continue
        outcomes = preview_event(
            index, event, default_region=args.default_region, now=now,
            strict_numbers=args.phone_validation == "strict",
        )  # fmt: skip
        totals.update(o.action if o.action == "send" else f"{o.action}:{o.reason}" for o in outcomes)
        if not any(o.action != "not_fired" for o in outcomes):
            totals["events_firing_nothing"] += 1
        _print_event(number, event, outcomes, as_json=args.json)
    if not args.json:
        summary = ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
        print(f"\n{len(lines) - bad_lines} event(s): {summary or 'nothing matched'}")
    return 1 if bad_lines else 0


def _print_event(number: int, event: Event, outcomes: list[Outcome], *, as_json: bool) -> None:
    if as_json:
        for outcome in outcomes or [Outcome("", "no_match")]:
            print(json.dumps(_outcome_json(number, outcome), ensure_ascii=False))
        return
    print(f"event {number} ({_describe(event)})")
    if not outcomes:
        print("  no mapping matched")
    for outcome in outcomes:
        _print_outcome(outcome, sys.stdout)
