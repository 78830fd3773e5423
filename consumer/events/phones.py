"""Phone numbers already in E.164 read without phonenumbers' general parser, to the same result.

Most events carry numbers as `+<country code><national number>`, and every message parses its
recipient: `phonenumbers.parse` runs four regular expressions and a normalisation over such a string
before it gets to the part that depends on the country. Reading one here takes a fifth of the time
(`tests/unit/events/test_phones.py` compares both on every region's example numbers and on many
thousands of generated ones). The country-dependent step is phonenumbers' own: its national-prefix
stripping and length test, exactly as `parse` applies them. Anything else (spaces, a national format,
an unknown country code), or a phonenumbers whose internals moved, goes to `phonenumbers.parse`.
"""

from __future__ import annotations

import re

import phonenumbers

try:  # internals of phonenumbers' parse; without them every number takes the general parser
    from phonenumbers.phonemetadata import PhoneMetadata
    from phonenumbers.phonenumberutil import (
        COUNTRY_CODE_TO_REGION_CODE,
        ValidationResult,
        _maybe_strip_national_prefix_carrier_code,
        _set_italian_leading_zeros_for_phone_number,
        _test_number_length,
    )

    _NOT_STRIPPED = (
        ValidationResult.TOO_SHORT,
        ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        ValidationResult.INVALID_LENGTH,
    )
    _FAST = True
except ImportError:  # pragma: no cover - depends on the installed phonenumbers
    _FAST = False

# '+', a digit that can start a country code, then what parse's length limits allow (at least 3 digits
# after the code, at most 17): shorter or longer strings take the general parser and its errors.
_E164 = re.compile(r"\+[1-9][0-9]{5,19}")


def parse_phone(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    """`phonenumbers.parse(text, region)`: the same PhoneNumber, or the same NumberParseException."""
    if _FAST and _E164.fullmatch(text):
        number = _international(text[1:])
        if number is not None:
            return number
    return phonenumbers.parse(text, region)


def _international(digits: str) -> phonenumbers.PhoneNumber | None:
    """The number of country code + national digits, or None to let `phonenumbers.parse` decide."""
    for size in (1, 2, 3):  # country calling codes are prefix-free: the first known one is the code
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code)
    )
    if metadata is None or len(national) < 2:
        return None
    # As parse does: strip a national prefix (a trunk 0, a carrier code) only when what is left is
    # still a possible length for the country.
    _carrier, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
    if _test_number_length(stripped, metadata) not in _NOT_STRIPPED:
        national = stripped
    if not 2 <= len(national) <= 17:
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    _set_italian_leading_zeros_for_phone_number(national, number)
    return number
