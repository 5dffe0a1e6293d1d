"""Calibration: make a confidence mean what it says, and show that it does.

The ranking's top posterior is mapped through a Platt curve,
p = 1 / (1 + exp(-(a + b * logit(posterior)))), fitted by maximum likelihood on
diagnoses whose truth is known. Reliability is shown as a table (of the
diagnoses given 0.9 or more, how many were right) and a Brier score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)


@dataclass(frozen=True)
class Outcome:
    """One diagnosis with known truth: the raw posterior, the confidence shown, and whether it was right."""

    posterior: float
    confidence: float
    right: bool


def percent(p: float) -> str:
    """A probability as a person reads it: never a flat 100 % or 0 %."""
    if p >= 0.995:
        return ">99%"
    if p < 0.005:
        return "<1%"
    return f"{p:.0%}"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_platt(outcomes: list[Outcome]) -> tuple[float, float]:
    """The intercept and slope that make the posteriors calibrated on these outcomes."""
    x = _logit(np.array([o.posterior for o in outcomes]))
    y = np.array([1.0 if o.right else 0.0 for o in outcomes])

    def loss(params: np.ndarray) -> float:
        z = params[0] + params[1] * x
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 1e-3 * params @ params)

    from scipy.optimize import minimize  # only here: it costs most of a second to import

    best = minimize(loss, np.array([0.0, 1.0]), method="L-BFGS-B", bounds=[(-10, 10), (0.05, 5)])
    return round(float(best.x[0]), 3), round(float(best.x[1]), 3)


def apply_platt(posterior: float, intercept: float, slope: float) -> float:
    p = min(max(posterior, 1e-6), 1 - 1e-6)
    return 1.0 / (1.0 + math.exp(-(intercept + slope * math.log(p / (1 - p)))))


def brier(outcomes: list[Outcome]) -> float:
    """Mean squared gap between the confidence shown and what happened (0 is perfect)."""
    if not outcomes:
        return float("nan")
    return round(sum((o.confidence - o.right) ** 2 for o in outcomes) / len(outcomes), 4)


def reliability(outcomes: list[Outcome]) -> list[dict]:
    """Rows of (confidence range, how many, mean confidence, share right)."""
    rows = []
    for low, high in zip(EDGES, EDGES[1:]):
        inside = [o for o in outcomes if low <= o.confidence < high]
        if inside:
            rows.append({"range": f"{low:.2f}-{min(high, 1.0):.2f}", "n": len(inside),
                         "mean_confidence": round(sum(o.confidence for o in inside) / len(inside), 3),
                         "right": round(sum(o.right for o in inside) / len(inside), 3)})
    high = [o for o in outcomes if o.confidence >= 0.9]
    rows.append({"range": ">=0.90", "n": len(high),
                 "mean_confidence": round(sum(o.confidence for o in high) / len(high), 3) if high else None,
                 "right": round(sum(o.right for o in high) / len(high), 3) if high else None})
    return rows


def calibration_figures(outcomes: list[Outcome]) -> dict:
    """The Brier score and the reliability rows, as a benchmark's result keeps them; none without outcomes."""
    return {"brier": brier(outcomes), "reliability": reliability(outcomes)} if outcomes else {}


def reliability_text(outcomes: list[Outcome], heading: str) -> str:
    """The reliability table and the Brier score under a heading that says whose confidence it is."""
    lines = [f"{heading}:", f"{'confidence':<12}{'n':>6}{'mean conf':>11}{'right':>8}"]
    for row in reliability(outcomes):
        mean = "-" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
        right = "-" if row["right"] is None else f"{row['right']:.3f}"
        lines.append(f"{row['range']:<12}{row['n']:>6}{mean:>11}{right:>8}")
    lines.append(f"Brier score {brier(outcomes)}")
    return "\n".join(lines)
