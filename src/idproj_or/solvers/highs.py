"""A resident HiGHS LP/MIP built once from plain arrays (``min c'z s.t. row_lower <= A z <=
row_upper, col_lower <= z <= col_upper``, some columns integer); a front (CVXPY today) changes
column costs, row bounds, coefficients and column bounds between solves and reads the outcome.
Worker side: imports numpy and highspy only.

Each run starts from a cleared solver (no basis, no incumbent carried from the previous
instance), with one thread, seed 0 and a zero MIP gap, so that the answer depends on the
current model alone; or, for an LP with warm starts, from the basis shipped with the instance
(:meth:`HighsModel.run`'s ``basis``: the columns' then the rows' ``HighsBasisStatus`` codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import statuses

# HiGHS model status -> common status; the others are "error".
HIGHS_STATUS = {
    "kOptimal": statuses.OPTIMAL,
    "kInfeasible": statuses.INFEASIBLE,
    "kUnbounded": statuses.UNBOUNDED,
    "kUnboundedOrInfeasible": statuses.INFEASIBLE_OR_UNBOUNDED,
    "kTimeLimit": statuses.TIME_LIMIT,
    "kIterationLimit": statuses.TIME_LIMIT,
    "kSolutionLimit": statuses.TIME_LIMIT,
    "kInterrupt": statuses.INTERRUPTED,
}


@dataclass(frozen=True, eq=False)
class HighsArrays:
    """The model as plain arrays (picklable): ``a`` column-wise as ``(indptr, indices, values)``
    with ``rows`` rows; infinite bounds as ``inf``."""

    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    rows: int
    integer: np.ndarray  # integer columns


class HighsRun(NamedTuple):
    """One run: the common status and HiGHS's word; with a decision, the columns' and rows'
    values, the duals (min form, HiGHS's signs: row duals ``d objective / d row bound``) and the
    objective's proven bound (the optimum for an LP; NaN without one)."""

    status: str
    word: str
    x: np.ndarray | None = None
    row_value: np.ndarray | None = None
    row_dual: np.ndarray | None = None
    col_dual: np.ndarray | None = None
    bound: float = math.nan
    basis: np.ndarray | None = None  # an LP's optimal basis (status codes), when asked for


class HighsModel:
    """A ``highspy.Highs`` holding the model, rebuilt only after an interrupt."""

    def __init__(self, arrays: HighsArrays) -> None:
        import highspy

        lp = highspy.HighsLp()
        n = len(arrays.cost)
        lp.num_col_ = n
        lp.num_row_ = arrays.rows
        lp.col_cost_ = np.asarray(arrays.cost, dtype=np.float64)
        lp.col_lower_ = arrays.col_lower
        lp.col_upper_ = arrays.col_upper
        lp.row_lower_ = arrays.row_lower
        lp.row_upper_ = arrays.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = arrays.indptr
        lp.a_matrix_.index_ = arrays.indices
        lp.a_matrix_.value_ = arrays.values
        self.mip = len(arrays.integer) > 0
        if self.mip:
            kinds = [highspy.HighsVarType.kContinuous] * n
            for j in arrays.integer.tolist():
                kinds[j] = highspy.HighsVarType.kInteger
            lp.integrality_ = kinds
        self.lp = lp
        self._stop = False
        self._time_limit: float | None = None
        self.highs = self._new_highs()

    def _new_highs(self) -> Any:
        import highspy

        highs = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", 1), ("random_seed", 0), ("mip_rel_gap", 0.0)):
            highs.setOptionValue(name, value)
        highs.passModel(self.lp)
        # interrupt() from another thread stops a MIP at its next node and an interior-point run
        # at its next iteration (no measurable cost; a check per simplex iteration costs ~5%)
        for event in ("cbIpmInterrupt", "cbMipInterrupt"):
            callback = getattr(highs, event)
            callback += self._check_stop
            setattr(highs, event, callback)
        self._time_limit = None
        return highs

    def _check_stop(self, event: Any) -> None:
        if self._stop:
            event.interrupt()

    def interrupt(self) -> None:
        self._stop = True

    def set_costs(self, cols: np.ndarray, values: np.ndarray) -> None:
        self.highs.changeColsCost(len(cols), cols, values)

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        for i, lo, hi in zip(rows.tolist(), lower.tolist(), upper.tolist()):  # highspy has no changeRowsBounds
            self.highs.changeRowBounds(i, lo, hi)

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        self.highs.changeColsBounds(len(cols), cols, lower, upper)

    def set_coeffs(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        for i, j, v in zip(rows.tolist(), cols.tolist(), values.tolist()):
            self.highs.changeCoeff(i, j, v)

    def run(self, time_limit: float | None, basis: np.ndarray | None = None, *, keep: bool = False) -> HighsRun:
        """Solve from a cleared solver, or (an LP) from ``basis``; with ``keep`` an LP's optimal
        run reports its basis."""
        highs = self.highs
        # Forget the previous basis and solution: a warm start would make the optimum returned
        # among ties depend on the instance solved before. Only the instance's own state starts it.
        highs.clearSolver()
        if basis is not None and not self.mip:
            self._set_basis(basis)
        self._stop = False
        if time_limit != self._time_limit:
            highs.setOptionValue("time_limit", math.inf if time_limit is None else float(time_limit))
            self._time_limit = time_limit
        highs.run()
        word = highs.getModelStatus().name
        common = HIGHS_STATUS.get(word, statuses.ERROR)
        if common == statuses.INTERRUPTED:  # HiGHS keeps the interrupt for later runs: start anew
            self.lp = highs.getLp()  # with the changes made since it was built
            self.highs = self._new_highs()
            return HighsRun(common, word)
        info = highs.getInfo()
        if common == statuses.TIME_LIMIT and info.primal_solution_status == 2:  # kSolutionStatusFeasible
            common = statuses.FEASIBLE
        if common not in statuses.SOLVED:
            return HighsRun(common, word)
        solution = highs.getSolution()
        if self.mip:
            bound = float(info.mip_dual_bound)
        else:
            bound = float(info.objective_function_value) if common == statuses.OPTIMAL else math.nan
        duals = solution.dual_valid and not self.mip
        kept = None
        if keep and not self.mip and common == statuses.OPTIMAL:
            found = highs.getBasis()
            if found.valid:
                found_status = (*found.col_status, *found.row_status)
                kept = np.fromiter(map(int, found_status), dtype=np.float64, count=len(found_status))
        return HighsRun(
            common,
            word,
            np.array(solution.col_value, dtype=np.float64),
            np.array(solution.row_value, dtype=np.float64),
            np.array(solution.row_dual, dtype=np.float64) if duals else None,
            np.array(solution.col_dual, dtype=np.float64) if duals else None,
            bound if math.isfinite(bound) else math.nan,
            kept,
        )

    def _set_basis(self, basis: np.ndarray) -> None:
        """Start from ``basis`` (status codes); a basis HiGHS refuses leaves the cold start."""
        import highspy

        lp = self.lp
        if len(basis) != lp.num_col_ + lp.num_row_:
            return
        codes = basis.astype(np.int64).tolist()
        kinds = [highspy.HighsBasisStatus(k) for k in range(5)]  # kLower, kBasic, kUpper, kZero, kNonbasic
        if not all(0 <= k < 5 for k in codes):
            return
        start = highspy.HighsBasis()
        start.col_status = [kinds[k] for k in codes[: lp.num_col_]]
        start.row_status = [kinds[k] for k in codes[lp.num_col_ :]]
        start.valid = True
        start.alien = True  # checked and repaired by HiGHS: data may have made it singular
        if self.highs.setBasis(start) != highspy.HighsStatus.kOk:
            self.highs.clearSolver()
