"""Float costs as int64 coefficients, for solvers that optimise integer objectives (CP-SAT, the
assignment, knapsack and routing solvers), with a bound on what the rounding can cost.

Costs are multiplied by a power of two ``S`` (exact in floating point) as large as the int64
headroom allows: for CP-SAT ``sum_v |S c_v| max|x_v| <= 2^60``, so the objective of any decision
fits, with room for the solver's own sums; the assignment and routing solvers state the limits
of their own arithmetic (measured). Then ``t_v = rint(S c_v)`` with residual ``r_v = |c_v - t_v / S|``
(0 for every cost that ``S`` makes integral: float32 costs over a range of ``2^36`` or less).

A decision optimal for ``t`` is at most ``sum_v r_v span_v`` (``span_v``: how far ``x_v`` can move)
worse than the optimum for ``c``: the *scaling error*. It is called optimal only when that bound
is within the float64 rounding of the decision's own objective (``n eps sum_v |c_v x_v|``); else
the decision is ``"feasible"`` and the bound is reported, never a worse decision labelled optimal.

Floating-point LP/MIP solvers (pywraplp, CVXPY) see the costs as they are; their tolerances
resolve a limited range of magnitudes (:data:`RESOLVED_RANGE`), and beyond it a decision is
``"feasible"`` with an infinite scaling error.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

HEADROOM_BITS = 60
EPS = float(np.finfo(np.float64).eps)


class IntegerCosts(NamedTuple):
    """``coeffs`` (int64) ~= ``scale * costs``; ``residual[v] = |costs[v] - coeffs[v] / scale|``."""

    coeffs: np.ndarray
    scale: float
    residual: np.ndarray


def scale_exponent(costs: np.ndarray, peaks: np.ndarray, *, headroom_bits: int = HEADROOM_BITS) -> int:
    """The largest ``k`` with ``sum_v |2^k costs_v| peaks_v <= 2^headroom_bits`` (0 for zero costs)."""
    total = float(np.abs(costs) @ peaks)
    if not total > 0:
        return 0
    return int(np.floor(headroom_bits - np.log2(total)))


def integer_costs(costs: np.ndarray, exponent: int) -> IntegerCosts:
    """``costs`` scaled by ``2^exponent`` and rounded to int64, with the residuals."""
    scaled = np.ldexp(np.asarray(costs, dtype=np.float64), exponent)
    coeffs = np.rint(scaled)
    residual = np.ldexp(np.abs(scaled - coeffs), -exponent)
    return IntegerCosts(coeffs.astype(np.int64), float(np.ldexp(1.0, exponent)), residual)


def sum_error(
    own: np.ndarray, summed: np.ndarray, total: np.ndarray, terms: np.ndarray, magnitude: np.ndarray
) -> np.ndarray:
    """Bound on the float64 rounding in ``total = own + summed``, ``summed[v]`` itself the sum of
    ``terms[v]`` cost entries of magnitudes summing to ``magnitude[v]``: exact for the last
    addition (TwoSum), ``(m - 1) eps magnitude`` for a sum of ``m`` entries (a variable repeated
    in the costs)."""
    back = total - own
    exact = np.abs((own - (total - back)) + (summed - back))
    return exact + np.maximum(terms - 1, 0) * EPS * magnitude


def scaling_error(residual: np.ndarray, spans: np.ndarray | float) -> float:
    """How much worse than optimal a decision optimal for the rounded costs can be."""
    return float(np.sum(residual * spans))


# Largest ratio of the largest to the smallest nonzero cost magnitude at which the floating-point
# LP/MIP backends (pywraplp, CVXPY) are tested to return the optimum: beyond it their absolute and
# relative tolerances may hide the small costs, and some treat 1e20 or 1e30 as infinite.
RESOLVED_RANGE = 1e12


def beyond_range(costs: np.ndarray) -> bool:
    """Whether a floating-point solver may not resolve ``costs`` (see :data:`RESOLVED_RANGE`)."""
    magnitude = np.abs(costs)
    nonzero = magnitude[magnitude > 0]
    return len(nonzero) > 0 and float(nonzero.max()) > RESOLVED_RANGE * float(nonzero.min())


def choice_error(residual: np.ndarray, x: np.ndarray, k: int) -> float:
    """:func:`scaling_error` for 0/1 decisions of exactly ``k`` ones (assignments, tours), often
    ``n / 2k`` times smaller: the rounding can cost ``x`` at most its own residuals plus those of
    the optimum, at most the ``k`` largest ones."""
    largest = np.partition(residual, len(residual) - k)[len(residual) - k :] if k else residual[:0]
    return min(float(residual @ x + largest.sum()), scaling_error(residual, 1.0))


def proven(error: float, costs: np.ndarray, x: np.ndarray) -> bool:
    """Whether a scaling error ``error`` is within the float64 rounding of the objective
    ``sum(costs * x)`` itself, so that the decision is optimal as far as float64 can tell."""
    return error <= len(costs) * EPS * float(np.abs(costs * x).sum())
