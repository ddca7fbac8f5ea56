"""Value checks for the files a user writes (specs, study files, search spaces).

Each check returns None when the value is fine, or what is wrong with it, worded
to follow the field's name: "must be >= 1, got 0". Spec sections and layer limits
use the same checks, so the same mistake reads the same wherever it is made.
"""

import difflib
import math


def one_of(value, choices):
    if value in choices:
        return None
    return f"must be one of {', '.join(choices)}, got {value!r}" + did_you_mean(str(value), choices)


def boolean(value):
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def integer(value, low):
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an integer, got {value!r}"
    return None if value >= low else f"must be >= {low}, got {value}"


def number(value, low=None, high=None, low_open=False, high_open=False):
    """A finite number within [low, high]; `low_open`/`high_open` leave that end out."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"must be a number, got {value!r}"
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        return f"must be {' and '.join(p for p in (lo, hi) if p)}, got {value}"
    return None


def string(value):
    return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"


def did_you_mean(word, choices):
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    lowered = {}
    for c in choices:  # the first spelling wins: callers list short names before Keras names
        lowered.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""
