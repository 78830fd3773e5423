"""Time zones: one check of an IANA name, used by mappings, gates, render and templates."""

from __future__ import annotations

import pytest

from consumer.zones import find_zone, zone_or_default


@pytest.mark.parametrize("name", [None, "", "Not/AZone", "../../etc/passwd"])
def test_an_unknown_time_zone_falls_back_to_the_default(name: str | None) -> None:
    assert zone_or_default(name, "Europe/Dublin").key == "Europe/Dublin"


@pytest.mark.parametrize("name", ["America", "x" * 65, "Europe/Atlantis", 7, None])
def test_what_is_not_an_iana_zone_name_is_no_zone(name: object) -> None:
    assert find_zone(name) is None


def test_a_zone_name_is_found() -> None:
    zone = find_zone("Europe/Paris")
    assert zone is not None
    assert zone.key == "Europe/Paris"
