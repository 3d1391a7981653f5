"""A double written as PostgreSQL writes it (`CAST(x AS text)`, PostgreSQL 12+ with the default
extra_float_digits = 1): the shortest digits that round-trip, plain when the decimal exponent is
in [-4, 15) and as `1.5e-05` / `1e+16` otherwise.

The Kestra flow's `unique_row_id` hashes fares and distances in this form, so DuckDB uses it (for
the rare values its own SQL does not write that way) to give the Kestra flow's ids.
"""

import math
from decimal import Decimal


def postgres_float_text(value: float | None) -> str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    # An int for a finite value (NaN's and infinity's letters are returned above).
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # digits before the decimal point
    decimal_exponent = point - 1
    minus = "-" if sign else ""
    if -4 <= decimal_exponent < 15:
        if point <= 0:
            return f"{minus}0.{'0' * -point}{text}"
        if point >= len(text):
            return f"{minus}{text}{'0' * (point - len(text))}"
        return f"{minus}{text[:point]}.{text[point:]}"
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    return f"{minus}{mantissa}e{'-' if decimal_exponent < 0 else '+'}{abs(decimal_exponent):02d}"
