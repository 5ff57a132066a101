"""Job selection on one machine with due dates per instance: learn job profits through CP-SAT.

Each instance offers 8 jobs with fixed processing times; the machine does one job at a time and
a job only pays if it finishes by its due date, so the decision is which jobs to accept (and
when to run them) to maximise the total profit. The due dates are drawn per instance and known at
decision time; the profits come from a degree-4 polynomial of 5 features with multiplicative noise
(PyEPO's knapsack value formula, integers), and a linear model predicts them.

The schedule is an ordinary CP-SAT model (optional intervals and ``add_no_overlap``) in which each
job's end is a variable; those end variables are declared as data,
``CpSatLayer(model, accept, data={"due": ends})``, so that ``layer(profits, due=due_dates)`` sets
each end's upper bound to the instance's due date. Only the ``accept`` variables carry predicted
profits; the starts and ends are the model's own.

    python examples/scheduling_due_dates.py                  # 1000 train / 1000 test, seed 0
    python examples/scheduling_due_dates.py --seeds 0 1 2

Prints the normalized test regret of the untrained model, the decision-focused model and the
two-stage baseline (least squares, then solve), next to the floor that the noise sets (deciding on
the true ``E[c | x]``); each decision is taken with its instance's due dates.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NamedTuple

import numpy as np
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

FEATURES, JOBS = 5, 8


class ScheduleData(NamedTuple):
    """Fixed ``durations (JOBS,)`` (ints); per instance ``features``, integer ``profits
    (N, JOBS)``, their mean ``expected = E[profits | features]`` and integer ``due (N, JOBS)``."""

    durations: np.ndarray
    features: np.ndarray
    profits: np.ndarray
    expected: np.ndarray
    due: np.ndarray


def generate(num_data: int, seed: int, *, deg: int = 4, noise_width: float = 0.5) -> ScheduleData:
    """Durations in ``2..6``; profits ``ceil(5 ((x B^T / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps)``;
    each job's due date uniform between its duration and 60% of the total duration, so that
    only some of the jobs fit."""
    rng = np.random.default_rng(seed)
    durations = rng.integers(2, 7, JOBS)
    b = rng.binomial(1, 0.5, (JOBS, FEATURES)).astype(np.float64)
    x = rng.normal(0.0, 1.0, (num_data, FEATURES))
    eps = rng.uniform(1.0 - noise_width, 1.0 + noise_width, (num_data, JOBS))
    mean = 5.0 * ((x @ b.T / math.sqrt(FEATURES) + 3.0) ** deg + 1.0) / 3.5**deg
    latest = int(0.6 * durations.sum())
    due = rng.integers(durations, latest + 1, (num_data, JOBS)).astype(np.float64)
    return ScheduleData(durations, x, np.ceil(mean * eps), data.expected_ceil(mean, noise_width), due)


def build_layer(durations: np.ndarray, **options: Any) -> ipo.CpSatLayer:
    """``max profit.accept``: accepted jobs run without overlap and end by their due dates
    (given per instance as ``due=``, the upper bounds of the end variables)."""
    horizon = int(durations.sum())
    model = cp_model.CpModel()
    accept = [model.new_bool_var(f"accept{j}") for j in range(JOBS)]
    # An end's own upper bound (the horizon: no due date) is a placeholder: every call sets its own.
    ends = [model.new_int_var(0, horizon, f"end{j}") for j in range(JOBS)]
    intervals = []
    for j in range(JOBS):
        start = model.new_int_var(0, horizon, f"start{j}")
        intervals.append(model.new_optional_interval_var(start, int(durations[j]), ends[j], accept[j], f"job{j}"))
    model.add_no_overlap(intervals)
    return ipo.CpSatLayer(model, accept, sense="max", data={"due": ends}, **options)


def run_seed(seed: int, args: argparse.Namespace) -> list[training.History]:
    """Label the data with its due dates, train decision-focused, fit the two-stage baseline,
    decide on E[c|x] (the floor)."""
    d = generate(args.train + args.test, seed)
    layer = build_layer(d.durations)
    ds = data.solve_dataset(layer, d.features, d.profits, data={"due": d.due}, progress=not args.quiet)
    return harness.compare_on(layer, ds, d.expected, args, seed)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run every seed, print the table; return :func:`idproj_or.demos._harness.summarize`'s output."""
    return harness.small_example(
        argv, "Job selection with per-instance due dates, trained through CpSatLayer (data={'due': ends}).", run_seed
    )


if __name__ == "__main__":
    main()
