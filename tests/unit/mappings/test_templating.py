"""Mapping templates: the no-Liquid fast path prints exactly what Liquid prints, and filters behave."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from liquid.exceptions import LiquidError

from consumer.mappings.templating import LENIENT_ENV, STRICT_ENV, Template, parse_duration, parse_time

SCOPE: dict[str, Any] = {
    "properties": {
        "name": "grace hopper",
        "total": 42.5,
        "count": 0,
        "flag": True,
        "off": False,
        "none": None,
        "emptytext": "",
        "list": [],
        "items": [{"sku": "a"}],
        "nested": {"k": "v"},
        "pad": "  x  ",
    },
    "traits": {},
}

SOURCES = [
    "Hi {{ properties.name }}!",
    "{{ properties.total }} {{ properties.count }} {{ properties.flag }} {{ properties.off }}",
    "[{{ properties.none }}]",
    "{{ properties.missing | default: 'there' }}",
    '{{ properties.count | default: "zero" }}',
    "{{ properties.off | default: 'no' }} {{ properties.none | default: 'nil' }}",
    "{{ properties.emptytext | default: 'e' }}",
    "{{ properties.list | default: 'empty list' }} {{ traits | default: 'no traits' }}",
    "{{ properties.name | upcase }} {{ properties.name | capitalize }} {{ properties.name | downcase }}",
    "{{ properties.missing | default: 'ada' | capitalize }}|{{ properties.pad | strip }}|",
    "{{ properties.total | upcase }} {{ properties.flag | upcase }}",
    "{{ properties.nested.k }}",
    "{{properties.name}}{{ properties.name }}",
    "{{ properties.nested }} {{ properties.items }}",
    "{{ properties.missing }}",
    "{{ properties.missing | upcase }}",
]


@pytest.mark.parametrize("source", SOURCES)
def test_the_fast_path_renders_what_liquid_renders(source: str) -> None:
    assert Template(source).render(SCOPE, strict=False) == LENIENT_ENV.from_string(source).render(**SCOPE)


@pytest.mark.parametrize("source", SOURCES[:13])
def test_simple_templates_take_the_fast_path(source: str) -> None:
    assert Template(source)._simple is not None


@pytest.mark.parametrize(
    "source",
    [
        "{% if properties.flag %}x{% endif %}",
        "{{ properties.name | truncate: 4 }}",
        "{{ 'a' }}",
        "{{ properties.name | default: properties.other }}",
        "{{- properties.name -}}",
        "{{ properties.items[0].sku }}",
    ],
)
def test_other_templates_go_through_liquid(source: str) -> None:
    template = Template(source)
    assert template._simple is None
    assert template.render(SCOPE, strict=False) == LENIENT_ENV.from_string(source).render(**SCOPE)


@pytest.mark.parametrize(
    "source", ["{{ properties.missing }}", "{{ properties.missing | upcase }}", "{{ nope.x }}"]
)
def test_strict_templates_raise_on_missing_variables_on_either_path(source: str) -> None:
    with pytest.raises(LiquidError, match="undefined"):
        Template(source.replace("nope", "traits")).render(SCOPE, strict=True)
    with pytest.raises(LiquidError):
        STRICT_ENV.from_string(source).render(**SCOPE)


NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ properties.at | date: '%d %b %Y %H:%M' }}", "05 Mar 2026 15:30"),
        ("{{ properties.at | in_time_zone: 'America/New_York' | date: '%H:%M %Z' }}", "10:30 EST"),
        ("{{ properties.at | time_add: '-1d2h' | date: '%Y-%m-%dT%H:%M' }}", "2026-03-04T13:30"),
        ("{{ 'now' | date: '%Y-%m-%d' }} {{ now | date: '%H:%M' }}", "2026-03-02 10:00"),
        ("{{ properties.epoch | date: '%Y-%m-%d' }}", "2026-03-02"),
        ("{{ properties.name | date: '%Y' }}", "grace hopper"),
        ("{{ properties.long | truncate: 10 }}", "abcdefg..."),
    ],
)
def test_date_time_zone_and_truncation_filters(source: str, expected: str) -> None:
    scope = {
        **SCOPE,
        "now": NOW,
        "properties": {
            **SCOPE["properties"],
            "at": "2026-03-05T15:30:00Z",
            "epoch": 1772445600,
            "long": "abcdefghijklmnop",
        },
    }
    assert Template(source).render(scope, strict=True) == expected


def test_an_unknown_time_zone_is_a_template_error() -> None:
    with pytest.raises(LiquidError, match="unknown time zone"):
        Template("{{ properties.at | in_time_zone: 'Mars/Base' }}").render(
            {"properties": {"at": "2026-03-05T15:30:00Z"}}, strict=True
        )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("4h", 14400),
        ("1d12h", 129600),
        ("-24h", -86400),
        ("+1h 30m", 5400),
        ("1.5h", 5400),
        ("soon", None),
        ("10", None),
        ("", None),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_an_epoch_out_of_range_is_printed_as_it_came() -> None:
    scope = {"properties": {"t": 1e300}, "now": dt.datetime(2026, 3, 2, tzinfo=dt.UTC)}
    assert Template("{{ properties.t | date: '%Y' }}").render(scope, strict=True) == "1e+300"


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{{ properties.t | time_add: '1d' }}", "9999-12-31T23:00:00Z"),
        ("{{ properties.t | in_time_zone: 'Pacific/Kiritimati' }}", "9999-12-31T23:00:00Z"),
        ("{{ properties.t | in_time_zone: properties.zone }}", "2026-03-02T10:00:00Z"),
    ],
)
def test_times_beyond_the_calendar_and_tz_directories_are_template_errors(source: str, value: Any) -> None:
    scope = {"properties": {"t": value, "zone": "America"}, "now": dt.datetime(2026, 3, 2, tzinfo=dt.UTC)}
    with pytest.raises(LiquidError):
        Template(source).render(scope, strict=True)


@pytest.mark.parametrize("value", [1e300, -1e20, float("nan"), float("inf"), 10**30])
def test_parse_time_gives_none_for_epochs_out_of_range(value: float) -> None:
    assert parse_time(value) is None
