"""Allocation under a budget per instance: learn asset returns from features through CVXPY.

Each instance allocates a budget over 12 assets: buy a fraction ``x_i in [0, 1]`` of asset ``i``
at price ``p_i``, spend at most this instance's budget, and at most half of it in any one of
3 sectors; the return is ``r.x``. The prices and sectors are fixed; the budget is drawn per
instance (20-60% of the price of everything) and known at decision time; the returns come from a
degree-4 polynomial of 5 features with multiplicative noise (PyEPO's cost formula), and a linear
model predicts them.

The LP is an ordinary CVXPY problem with the budget as a parameter, declared as data:
``CvxpyLayer(problem, ret, x, data={"budget": budget})``, called as
``layer(returns, budget=budgets)``. The problem is compiled once; each instance fills in its
budget (both in the spending row and in the sector rows, which scale with it).

    python examples/portfolio_budget.py                      # 1000 train / 1000 test, seed 0
    python examples/portfolio_budget.py --seeds 0 1 2

Prints the normalized test regret of the untrained model, the decision-focused model and the
two-stage baseline (least squares, then solve), next to the floor that the noise sets (deciding on
the true ``E[c | x]``); each decision is taken with its instance's budget.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NamedTuple

import cvxpy as cp
import numpy as np

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

FEATURES, ASSETS, SECTORS = 5, 12, 3
SECTOR_SHARE = 0.5  # at most this share of the budget in one sector


class PortfolioData(NamedTuple):
    """Fixed ``prices (ASSETS,)`` and ``sectors (ASSETS,)``; per instance ``features``,
    ``returns (N, ASSETS)``, their mean ``expected = E[returns | features]`` and ``budgets (N,)``."""

    prices: np.ndarray
    sectors: np.ndarray
    features: np.ndarray
    returns: np.ndarray
    expected: np.ndarray
    budgets: np.ndarray


def generate(num_data: int, seed: int, *, deg: int = 4, noise_width: float = 0.5) -> PortfolioData:
    """``r = ((x B^T / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps``, ``eps ~ U[1 - w, 1 + w]`` (PyEPO's
    shortest-path costs; the + 1 keeps every return away from 0); prices in
    ``[1, 3)``; budgets uniform in 20-60% of the total price, rounded down to 0.01."""
    rng = np.random.default_rng(seed)
    prices = np.round(rng.uniform(1.0, 3.0, ASSETS), 2)
    sectors = np.arange(ASSETS) % SECTORS
    b = rng.binomial(1, 0.5, (ASSETS, FEATURES)).astype(np.float64)
    x = rng.normal(0.0, 1.0, (num_data, FEATURES))
    eps = rng.uniform(1.0 - noise_width, 1.0 + noise_width, (num_data, ASSETS))
    mean = ((x @ b.T / math.sqrt(FEATURES) + 3.0) ** deg + 1.0) / 3.5**deg
    budgets = np.floor(rng.uniform(0.2, 0.6, num_data) * prices.sum() * 100.0) / 100.0
    return PortfolioData(prices, sectors, x, mean * eps, mean, budgets)


def build_layer(prices: np.ndarray, sectors: np.ndarray, **options: Any) -> ipo.CvxpyLayer:
    """``max r.x s.t. p.x <= budget, p_s.x_s <= share * budget per sector s, 0 <= x <= 1``."""
    ret = cp.Parameter(ASSETS)
    budget = cp.Parameter(nonneg=True, value=float(prices.sum()))  # its value here: a placeholder
    x = cp.Variable(ASSETS)
    constraints = [prices @ x <= budget, x >= 0, x <= 1]
    for s in range(SECTORS):
        mask = (sectors == s).astype(np.float64)
        constraints.append((mask * prices) @ x <= SECTOR_SHARE * budget)
    problem = cp.Problem(cp.Maximize(ret @ x), constraints)
    return ipo.CvxpyLayer(problem, ret, x, data={"budget": budget}, **options)


def run_seed(seed: int, args: argparse.Namespace) -> list[training.History]:
    """Label the data with its budgets, train decision-focused, fit the two-stage baseline,
    decide on E[c|x] (the floor)."""
    d = generate(args.train + args.test, seed)
    layer = build_layer(d.prices, d.sectors)
    ds = data.solve_dataset(layer, d.features, d.returns, data={"budget": d.budgets}, progress=not args.quiet)
    return harness.compare_on(layer, ds, d.expected, args, seed)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run every seed, print the table; return :func:`idproj_or.demos._harness.summarize`'s output."""
    return harness.small_example(
        argv, "Allocation LP with a per-instance budget, trained through CvxpyLayer (data={'budget': b}).", run_seed
    )


if __name__ == "__main__":
    main()
