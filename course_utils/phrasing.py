"""Sentences built from measured values, so that an interpretation printed by a notebook ("about two
thirds", "in about the same time", "beyond the spread") always agrees with the numbers beside it.

The notebooks' markdown states settings and quotes papers; what a run measured, and what it means
in words, comes from these functions (tests/test_prose.py keeps the markdown honest).
"""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["fraction_words", "share", "time_ratio_words", "points", "gain_words", "mean_sd", "paired_words",
           "paired_verdict"]

# (upper bound of the fraction, words); the first bound the fraction does not exceed names it
_FRACTIONS = ((0.0, "none"), (0.05, "almost none"), (0.15, "few"), (0.22, "about a fifth"), (0.29, "about a quarter"),
              (0.38, "about a third"), (0.47, "under half"), (0.53, "about half"), (0.6, "just over half"),
              (0.71, "about two thirds"), (0.8, "about three quarters"), (0.95, "most"), (0.999999, "almost all"),
              (1.0, "all"))


def fraction_words(fraction: float) -> str:
    """A fraction in [0, 1] in words: 0.54 -> "just over half", 0.66 -> "about two thirds"."""
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"a fraction lies in [0, 1], got {fraction}")
    return next(words for bound, words in _FRACTIONS if fraction <= bound)


def share(count: int, total: int) -> str:
    """"26 of 48 (54%, just over half)"; "0 of 0" for an empty total."""
    if total == 0:
        return "0 of 0"
    fraction = count / total
    return f"{count} of {total} ({100 * fraction:.0f}%, {fraction_words(fraction)})"


def time_ratio_words(seconds: float, reference_seconds: float, *, same_within: float = 0.15) -> str:
    """How `seconds` compares with `reference_seconds`: "in about the same time (61 s vs 58 s)" within
    `same_within` (relative), else "in 2.0x the time (123 s vs 61 s)" or "in 0.5x the time (...)"."""
    if reference_seconds <= 0:
        raise ValueError("the reference time must be positive")
    ratio = seconds / reference_seconds
    both = f"({seconds:.0f} s vs {reference_seconds:.0f} s)"
    if abs(ratio - 1) <= same_within:
        return f"in about the same time {both}"
    return f"in {ratio:.1f}x the time {both}"


def points(difference: float) -> str:
    """A difference of two accuracies in percentage points, signed: 0.025 -> "+2.5 points"."""
    return f"{100 * difference:+.1f} points"


def gain_words(gain: float, spread: float) -> str:
    """A paired gain against the spread that could explain it: "+2.5 points, beyond the spread of
    1.1 points" or "+0.4 points, within the spread of 1.1 points (no measurable gain)"."""
    if gain > spread:
        return f"{points(gain)}, beyond the spread of {100 * spread:.1f} points"
    if gain < -spread:
        return f"{points(gain)}, a loss beyond the spread of {100 * spread:.1f} points"
    return f"{points(gain)}, within the spread of {100 * spread:.1f} points (no measurable difference)"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_words(differences: Sequence[float], runs: str = "seeds") -> str:
    """Paired differences (one per seed or draw) in words: "+5.0 ± 2.1 points, above zero on 3 of 3
    seeds" (mean ± standard deviation)."""
    mean, sd = mean_sd(differences)
    above = sum(d > 0 for d in differences)
    return f"{100 * mean:+.1f} ± {100 * sd:.1f} points, above zero on {above} of {len(differences)} {runs}"


def paired_verdict(differences: Sequence[float]) -> str:
    """"higher" when every paired difference is above zero, "lower" when every one is below, else
    "not consistently different": the sign test's reading of so few runs, never a mean alone."""
    if differences and all(d > 0 for d in differences):
        return "higher"
    if differences and all(d < 0 for d in differences):
        return "lower"
    return "not consistently different"
