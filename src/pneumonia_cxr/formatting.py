"""How a number and its confidence interval are written for a reader: "value [low, high]", three decimals.

Invariant: every table, notebook and generated text writes an interval through `value_ci`, so they all read alike.
"""

from __future__ import annotations


def _missing(x) -> bool:
    return x is None or x != x  # None or NaN


def value_ci(value, low=None, high=None, digits: int = 3) -> str:
    """`0.912 [0.887, 0.934]`; the value alone where there is no interval; "-" where there is no value.

    Args:
        value: the estimate (None or NaN: not available, e.g. a published number its source did not report).
        low, high: the interval's ends (None or NaN: no interval).
        digits: decimals of every number.

    Returns:
        The text.
    """
    if _missing(value):
        return "-"
    if _missing(low) or _missing(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
