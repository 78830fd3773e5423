"""Match events to mappings through an index, so thousands of mappings are not a scan per event.

Triggers are indexed by track event name, audience key, journey step (key, id or journey id),
computed-trait key, and — for type-only triggers — event type. An event looks up only the buckets
its own keys select, then checks the rest of each candidate's trigger and its compiled conditions.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Sequence
from collections.abc import Mapping as JSONObject
from typing import Any

from consumer.events.model import JSON, Event
from consumer.mappings.conditions import AllOf, AnyOf, Comparison, Condition, NotOf
from consumer.mappings.model import Mapping
from consumer.mappings.templating import parse_time
from consumer.mappings.triggers import Trigger

_MISSING = object()


class Lookup:
    """Dotted-path reads over one event; derived views are computed once per event, on first use."""

    __slots__ = ("_cache", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._cache: dict[str, Any] = {}

    def root(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        ev = self.event
        value: Any
        if name in ("properties", "traits", "context", "integrations"):
            value = getattr(ev, name)
        elif name in ("audience", "journey", "computed_trait"):
            view = getattr(ev, name)
            value = _shallow(view) if view is not None else _MISSING
        elif name == "event":
            value = ev.to_segment()
        else:  # envelope keys by their Segment names
            value = ev.to_segment().get(name, _MISSING)
        self._cache[name] = value
        return value

    def get(self, parts: Sequence[str]) -> Any:
        """The value at `parts` (root first), or the module's _MISSING sentinel."""
        value = self.root(parts[0])
        for part in parts[1:]:
            if isinstance(value, JSONObject):
                value = value.get(part, _MISSING)
            elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
                index = int(part)
                value = value[index] if -len(value) <= index < len(value) else _MISSING
            else:
                return _MISSING
            if value is _MISSING:
                return value
        return value


def _shallow(view: Any) -> dict[str, Any]:
    """A view's fields as a dict, without `asdict`'s deep copy: that recurses through the event's
    own nesting (journey_context) and would exhaust the stack on deeply nested events."""
    return {f.name: getattr(view, f.name) for f in dataclasses.fields(view)}


Predicate = Callable[[Lookup], bool]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond a double's range (JSON allows it)
            return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _ordered(expected: float | str, op: Callable[[Any, Any], bool]) -> Callable[[Any], bool]:
    """Compare numbers numerically, ISO times as times, other text as text."""
    if isinstance(expected, int | float):
        number = float(expected)
        return lambda actual: (n := _number(actual)) is not None and op(n, number)
    when = parse_time(expected)
    if when is not None:
        return lambda actual: (t := parse_time(actual)) is not None and op(t, when)
    return lambda actual: isinstance(actual, str) and op(actual, expected)


def _contains(expected: JSON) -> Callable[[Any], bool]:
    def test(actual: Any) -> bool:
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list | tuple):
            return expected in actual
        if isinstance(actual, JSONObject):
            return isinstance(expected, str) and expected in actual
        return False

    return test


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda actual: (
        isinstance(actual, str | int | float)
        and not isinstance(actual, bool)
        and bool(pattern.search(str(actual)))
    )


def _equals(expected: JSON) -> Callable[[Any], bool]:
    if isinstance(expected, bool):  # True == 1 in Python; a condition on a boolean wants a boolean
        return lambda actual: actual is expected
    return lambda actual: actual is not _MISSING and not isinstance(actual, bool) and bool(actual == expected)


def _not_equals(expected: JSON) -> Callable[[Any], bool]:
    return lambda actual: actual is _MISSING or bool(actual != expected)


def _one_of(choices: Sequence[JSON] | None, *, negate: bool) -> Callable[[Any], bool]:
    values = [c for c in choices or () if not isinstance(c, dict | list)]
    return lambda actual: (actual is not _MISSING and actual in values) is not negate


def _exists(wanted: bool | None) -> Callable[[Any], bool]:
    return lambda actual: (actual is not _MISSING and actual is not None) is bool(wanted)


_BUILDERS: dict[str, Callable[[Comparison], Callable[[Any], bool]]] = {
    "equals": lambda c: _equals(c.equals),
    "not_equals": lambda c: _not_equals(c.not_equals),
    "in": lambda c: _one_of(c.in_, negate=False),
    "not_in": lambda c: _one_of(c.not_in, negate=True),
    "exists": lambda c: _exists(c.exists),
    "contains": lambda c: _contains(c.contains),
    "matches": lambda c: _matches(c.matches) if c.matches is not None else (lambda _: False),
    "gt": lambda c: _ordered(c.gt, operator.gt) if c.gt is not None else (lambda _: False),
    "gte": lambda c: _ordered(c.gte, operator.ge) if c.gte is not None else (lambda _: False),
    "lt": lambda c: _ordered(c.lt, operator.lt) if c.lt is not None else (lambda _: False),
    "lte": lambda c: _ordered(c.lte, operator.le) if c.lte is not None else (lambda _: False),
}


def compile_condition(condition: Condition) -> Predicate:
    """Turn a condition tree into a predicate once, at index build time."""
    if isinstance(condition, AllOf):
        parts = [compile_condition(c) for c in condition.all]
        return lambda look: all(p(look) for p in parts)
    if isinstance(condition, AnyOf):
        parts = [compile_condition(c) for c in condition.any]
        return lambda look: any(p(look) for p in parts)
    if isinstance(condition, NotOf):
        inner = compile_condition(condition.not_)
        return lambda look: not inner(look)
    path = tuple(condition.path.split("."))
    test = _BUILDERS[condition.operator](condition)
    return lambda look: test(look.get(path))


@dataclasses.dataclass(frozen=True)
class _Entry:
    order: int
    mapping: Mapping
    condition: Predicate | None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Why a candidate mapping fires or not; `reason` is None when it fires."""

    mapping: Mapping
    reason: str | None  # "disabled" | "condition_false" | "audience_exited" | ...


def _trigger_reason(trigger: Trigger, event: Event) -> str | None:  # noqa: PLR0911
    """None when the non-indexed parts of the trigger hold for the event, else a bounded reason."""
    if trigger.type is not None and event.type != trigger.type:
        return "type_mismatch"
    if trigger.audience is not None:
        membership = event.audience
        if membership is None:
            return "not_a_membership"
        change = trigger.audience.membership
        if change != "any" and membership.entered is not (change == "entered"):
            return "audience_exited" if change == "entered" else "audience_entered"
    if trigger.journey is not None:
        step = event.journey
        want = trigger.journey
        if step is None:
            return "not_a_journey_step"
        for wanted, actual in (
            (want.id, step.journey_id),
            (want.step_key, step.step_key),
            (want.step_id, step.step_id),
        ):
            if wanted is not None and wanted != actual:
                return "journey_mismatch"
        membership = event.audience
        if (
            membership is not None
            and membership.computation_class == "journey_step"
            and not membership.entered
        ):
            return "journey_step_exited"
    return None


class MatchIndex:
    """Mappings indexed by trigger key; `match` returns the mappings an event fires, in file order."""

    def __init__(self, mappings: Sequence[Mapping]) -> None:
        self._events: dict[str, list[_Entry]] = {}
        self._audiences: dict[str, list[_Entry]] = {}
        self._steps: dict[tuple[str, str], list[_Entry]] = {}
        self._traits: dict[str, list[_Entry]] = {}
        self._types: dict[str, list[_Entry]] = {}
        self._any_type: list[_Entry] = []
        for order, mapping in enumerate(mappings):
            trig = mapping.trigger
            entry = _Entry(order, mapping, compile_condition(trig.conditions) if trig.conditions else None)
            if trig.event is not None:
                for name in trig.event:
                    self._events.setdefault(name, []).append(entry)
            elif trig.audience is not None:
                self._audiences.setdefault(trig.audience.key, []).append(entry)
            elif trig.journey is not None:
                j = trig.journey
                key = (
                    ("step_key", j.step_key)
                    if j.step_key
                    else ("step_id", j.step_id)
                    if j.step_id
                    else ("id", j.id)
                )
                assert key[1] is not None
                self._steps.setdefault((key[0], key[1]), []).append(entry)
            elif trig.computed_trait is not None:
                self._traits.setdefault(trig.computed_trait.key, []).append(entry)
            elif trig.type is not None:
                self._types.setdefault(trig.type, []).append(entry)
            else:  # pragma: no cover - the model rejects triggers without any key
                self._any_type.append(entry)

    def _candidates(self, event: Event) -> list[_Entry]:
        found: list[_Entry] = []
        if event.type == "track" and event.event is not None:
            found += self._events.get(event.event, ())
        if self._audiences and (membership := event.audience) is not None:
            found += self._audiences.get(membership.key, ())
        if self._steps and (step := event.journey) is not None:
            for key in (("step_key", step.step_key), ("step_id", step.step_id), ("id", step.journey_id)):
                if key[1] is not None:
                    found += self._steps.get((key[0], key[1]), ())
        if self._traits and (trait := event.computed_trait) is not None:
            found += self._traits.get(trait.key, ())
        found += self._types.get(event.type, ())
        found += self._any_type
        if len(found) > 1:
            found.sort(key=lambda e: e.order)
        return found

    def explain(self, event: Event) -> list[Verdict]:
        """Every candidate the index selects, with the reason it does not fire (None when it does)."""
        look = Lookup(event)
        verdicts: list[Verdict] = []
        for entry in self._candidates(event):
            reason = _trigger_reason(entry.mapping.trigger, event)
            if reason is None and not entry.mapping.enabled:
                reason = "disabled"
            if reason is None and entry.condition is not None and not entry.condition(look):
                reason = "condition_false"
            verdicts.append(Verdict(entry.mapping, reason))
        return verdicts

    def match(self, event: Event) -> list[Mapping]:
        """The enabled mappings whose trigger and conditions hold for `event`, in file order."""
        return [v.mapping for v in self.explain(event) if v.reason is None]


__all__ = ["Lookup", "MatchIndex", "Verdict", "compile_condition"]
