"""Coarsening rules: how each catalogue value is made less precise before it leaves an install.

The agent applies :func:`coarsen` to every raw reading; the collector checks that a value is already
coarse (``coarsen(rule, v) == v``) so an agent that skips the step is refused rather than trusted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Final

__all__ = ["RULES", "coarsen", "is_coarse", "is_sig2", "round_sig2"]


def _exact(value: object) -> object:
    return value


def _round(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("round needs a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    # Half-up, not banker's rounding: 2.5 GiB is reported as 3, which is what a person expects.
    return math.floor(value + 0.5)


def round_sig2(value: float) -> int:
    """Round a non-negative number to two significant digits: 487 -> 490, 1234 -> 1200, 7 -> 7."""
    n: int = math.floor(value + 0.5)
    if n < 100:
        return n
    scale: int = 10 ** (len(str(n)) - 2)
    return ((n + scale // 2) // scale) * scale


def is_sig2(value: int) -> bool:
    """Whether a non-negative integer already has at most two significant digits (the hot-path form of
    ``round_sig2(value) == value``: one modulo instead of a rounding)."""
    if value < 100:
        return True
    scale: int = 10 ** (len(str(value)) - 2)
    return value % scale == 0


def _round_sig2(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("round_sig2 needs a number")
    return round_sig2(value)


_MAJOR_MINOR: Final = re.compile(r"^(?P<name>.*?) ?(?P<major>[0-9]{1,4})(?:\.(?P<minor>[0-9]{1,3}))?")


def _major_minor(value: object) -> object:
    """Keep ``Name major.minor`` and drop patch levels, builds and suffixes: ``Ubuntu 22.04.3 LTS`` -> ``Ubuntu 22.04``."""
    if not isinstance(value, str):
        raise TypeError("major_minor needs a string")
    match = _MAJOR_MINOR.match(value.strip())
    if match is None:
        raise ValueError("no version number")
    name, major, minor = match["name"].strip(), match["major"], match["minor"]
    version = f"{major}.{minor}" if minor is not None else major
    return f"{name} {version}" if name else version


RULES: Final[dict[str, Callable[[object], object]]] = {
    "exact": _exact,
    "round": _round,
    "round_sig2": _round_sig2,
    "major_minor": _major_minor,
}
"""Every coarsening rule the catalogue may name."""


def coarsen(rule: str, value: object) -> object:
    """Apply the named rule to a raw value (raises ``KeyError`` for an unknown rule)."""
    return RULES[rule](value)


def is_coarse(rule: str, value: object) -> bool:
    """Whether a value is already as coarse as the rule makes it."""
    try:
        return coarsen(rule, value) == value
    except (TypeError, ValueError):
        return False
