"""Reading the loosely typed form fields both upload interfaces accept."""

from __future__ import annotations

import math

from cpcs.errors import InputError

TRUE_WORDS = {"1", "true", "yes", "on", "y", "t"}
FALSE_WORDS = {"", "0", "false", "no", "off", "n", "f", "none"}


def parse_optional_float(value: str | None, field: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value.strip())
    except ValueError:
        raise InputError(
            f"{field} must be a number, not {value[:40]!r}.", code=f"invalid_{field.lower()}"
        ) from None
    if not math.isfinite(number):
        raise InputError(f"{field} must be a finite number.", code=f"invalid_{field.lower()}")
    return number


def parse_flag(value: str | None) -> bool:
    word = (value or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InputError(f"A yes/no field got {(value or '')[:40]!r}; send 1 or 0.", code="invalid_flag")
