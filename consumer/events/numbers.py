"""Numbers printed the way JavaScript prints them (`Number.prototype.toString`).

Segment's templates ran on JavaScript, where every JSON number is a double and `100.0` prints as
`100`, `1e16` as `10000000000000000` and `1e21` as `1e+21`. Avro doubles and JSON numbers reach our
templates as Python floats, whose `str` differs (`100.0`, `1e+16`); bodies, ContentVariables and tags
print them through `js_number` so a template migrated from Segment sends the same text.
"""

from __future__ import annotations

import math
from decimal import Decimal


def js_number(value: int | float) -> str:
    """`value` as JavaScript's `String(value)` prints it; ints exactly as written."""
    if isinstance(value, int):
        return str(value)  # exact: an Avro long is not a double, nothing to round
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # -0 too, as in JavaScript
    # repr gives the shortest digits that round-trip, which is what ECMAScript's algorithm picks.
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0")
    assert isinstance(exponent, int)
    point = exponent + len(digits)  # where the decimal point falls relative to the digits
    out = _place(text, point)
    return "-" + out if value < 0 else out


def _place(digits: str, point: int) -> str:
    """ECMAScript Number::toString steps for digits `digits` with the point after `point` of them."""
    k = len(digits)
    if k <= point <= 21:
        return digits + "0" * (point - k)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exp = point - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"
