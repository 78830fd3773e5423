"""The E.164 fast path reads every number exactly as phonenumbers.parse does, errors included."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from consumer.events import phones
from consumer.events.phones import parse_phone
from consumer.events.recipients import normalize_phone

TYPES = [v for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper() and isinstance(v, int)]


def general(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return f"error {exc.error_type}"


def fast(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    try:
        return parse_phone(text, region)
    except phonenumbers.NumberParseException as exc:
        return f"error {exc.error_type}"


def samples() -> list[str]:
    """Every region's example numbers in E.164, with a trunk prefix put back after the country code
    (parse strips it where the rest is still a possible number), and random digits after every code."""
    out: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            code = str(example.country_code)
            national = e164[1 + len(code) :]
            out += [e164, f"+{code}0{national}", f"+{code}1{national}", f"+{code}{national}0", e164[:-2]]
    rng = random.Random(20261202)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(20_000):
        code = rng.choice(codes)
        length = rng.randint(2, 16)
        out.append(f"+{code}{rng.randint(0, 10**length - 1):0{length}d}")
    out += ["+0123456789", "+999123456789", "+1", "+12", "+1415555012", "+141555501234567890123"]
    return out


def test_the_fast_path_is_taken() -> None:
    assert phones._FAST, "phonenumbers' internals are where this module expects them"


@pytest.mark.parametrize("region", ["US", "GB", None])
def test_every_sample_parses_to_the_same_number_or_the_same_error(region: str | None) -> None:
    different = [
        (t, fast(t, region), general(t, region)) for t in samples() if fast(t, region) != general(t, region)
    ]
    assert not different, different[:5]


def test_the_same_numbers_are_normalised_and_validated_either_way() -> None:
    for text in samples()[:3000]:
        number = general(text, "US")
        possible = isinstance(number, phonenumbers.PhoneNumber) and phonenumbers.is_possible_number(number)
        expected = (
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if possible else None
        )
        assert normalize_phone(text, "US") == expected, text
