"""Argument types for the command line: numbers refused at parse time when they make no sense."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def at_least(low: float, kind: type = int, what: str = "number") -> Callable[[str], float]:
    """An argparse type: a finite `kind` of at least `low`, else a one-line usage error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a {what} of {low} or more")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


count = at_least(1, int, "count")
positive_seconds = at_least(0.001, float, "number of seconds")
