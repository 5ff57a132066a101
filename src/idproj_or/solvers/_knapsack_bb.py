"""Exact branch and bound for the multi-dimensional 0/1 knapsack, compiled by numba.

``max v @ x`` s.t. ``W @ x <= C``, ``x`` in {0, 1}^n, with float ``v``, integer ``W >= 0``,
``C >= 0``.

- Items of value ``<= 0`` and items heavier than a capacity are left out before the search.
- Bound: the LP relaxation (Dantzig) of a *surrogate* constraint ``(u @ W) x <= u @ C``, the
  rows mixed with multipliers ``u_k = theta_k / C_k`` (theta on the simplex) chosen at the root
  by golden-section search to make that bound small; and, at each node that survives it, the
  Dantzig bound of each single row. Any ``u >= 0`` gives a valid bound, so the choice of theta
  only affects speed. A node is pruned when its bound is at most ``incumbent + gap``: ties with
  the incumbent are never explored, and the first optimum met in the (deterministic) search
  order is the answer. The caller sets ``gap``: 0 for any values (the packing is then optimal
  up to the float64 rounding of its sums), or just below ``g`` when every value is a multiple
  of ``g`` (integers: ``g = 1``), since then no packing lies strictly between ``incumbent`` and
  ``incumbent + g``: near-ties are skipped as an integer search would skip them.
- Depth first over the items in decreasing surrogate efficiency ``v_i / (u @ W)_i``, "take"
  before "leave"; the greedy packing in that order is the first incumbent.
- The bound's capacity arithmetic errs upwards (a slack on the residual capacity); its value sums
  are float64 sums of at most ``n + 1`` terms, exact for multiples of ``g`` below ``2^53 g``.

On PyEPO's knapsack (2 rows) this took, a solve: 30 us on training predictions (32 items);
0.06 / 0.1 ms on its true values with / without ties broken, where OR-Tools' ``KnapsackSolver``
branch and bound takes 0.7 / 2.4 ms; at 64 items 0.3 / 6.5 ms against 4.8 ms / 2.2 s.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, objmode

_GOLDEN = 0.6180339887498949
_GOLDEN_STEPS = 10
_CLOCK_EVERY = 4096  # nodes between two looks at the clock when a time limit is set
_SLACK = 1e-9  # added to the surrogate residual: covers its float error, raises the bound only


@njit(cache=True)
def _clock() -> float:
    with objmode(t="float64"):
        t = time.perf_counter()
    return t


@njit(cache=True)
def _surrogate(v, w, cand, caps, theta):
    """Surrogate weights ``sum_k theta_k W_k / C_k`` of the candidates, and the candidates'
    positions in decreasing efficiency ``v / s`` (stable: ties keep the item order)."""
    m, d = cand.shape[0], caps.shape[0]
    s = np.zeros(m)
    r = np.empty(m)
    for j in range(m):
        for k in range(d):
            if theta[k] > 0:
                s[j] += theta[k] * w[k, cand[j]] / caps[k]
        r[j] = v[cand[j]] / s[j] if s[j] > 0 else np.inf
    return s, np.argsort(-r, kind="mergesort")


@njit(cache=True)
def _surrogate_bound(v, w, cand, caps, theta):
    """Dantzig bound of the root surrogate relaxation for weights ``theta_k / C_k``."""
    s, order = _surrogate(v, w, cand, caps, theta)
    m = cand.shape[0]
    room = 1.0
    bound = 0.0
    for t in range(m):
        j = order[t]
        if s[j] <= room:
            room -= s[j]
            bound += v[cand[j]]
        else:
            bound += v[cand[j]] * room / s[j]
            break
    return bound


@njit(cache=True)
def _along(v, w, cand, caps, theta, k, t, active, trial):
    """Root bound at theta moved along row ``k``'s direction: ``theta_k = t``, the other active
    rows keep their proportions and share ``1 - t``."""
    d = caps.shape[0]
    rest = 1.0 - theta[k]
    n_others = active.sum() - 1
    for q in range(d):
        if q == k:
            trial[q] = t
        elif active[q]:
            trial[q] = theta[q] * (1.0 - t) / rest if rest > 0 else (1.0 - t) / n_others
        else:
            trial[q] = 0.0
    return _surrogate_bound(v, w, cand, caps, trial)


@njit(cache=True)
def _multipliers(v, w, cand, caps):
    """theta on the simplex (over rows of positive capacity) making the root bound small:
    golden-section search along each row's direction (once for two rows, twice for more)."""
    d = caps.shape[0]
    active = caps > 0
    n_active = active.sum()
    theta = np.zeros(d)
    for k in range(d):
        if active[k]:
            theta[k] = 1.0 / n_active
    if n_active < 2 or cand.shape[0] == 0:
        return theta
    trial = np.empty(d)
    for _ in range(1 if n_active == 2 else 2):
        for k in range(d):
            if not active[k]:
                continue
            lo, hi = 0.0, 1.0
            a, c = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
            fa = _along(v, w, cand, caps, theta, k, a, active, trial)
            fc = _along(v, w, cand, caps, theta, k, c, active, trial)
            for _ in range(_GOLDEN_STEPS):
                if fa <= fc:
                    hi, c, fc = c, a, fa
                    a = hi - _GOLDEN * (hi - lo)
                    fa = _along(v, w, cand, caps, theta, k, a, active, trial)
                else:
                    lo, a, fa = a, c, fc
                    c = lo + _GOLDEN * (hi - lo)
                    fc = _along(v, w, cand, caps, theta, k, c, active, trial)
            _along(v, w, cand, caps, theta, k, 0.5 * (lo + hi), active, trial)
            theta[:] = trial
            if n_active == 2:
                break  # with two rows, one direction spans the whole simplex
    return theta


@njit(cache=True)
def _fits(used, w, caps, j):
    """Item at position ``j`` fits in what ``used`` leaves of every capacity."""
    for k in range(caps.shape[0]):
        if used[k] + w[k, j] > caps[k]:
            return False
    return True


@njit(cache=True)
def _solve(values, weights, caps, gap, time_limit, x_out, abort):
    """One instance into ``x_out`` (0/1). Returns 0 when proven optimal, 1 when the time limit
    stopped the search (``x_out`` is then the best packing found), 2 when ``abort[0]`` did. A
    subproblem is pruned when its bound is at most the incumbent plus ``gap``."""
    d, n = weights.shape
    x_out[:] = 0
    cand = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if values[i] <= 0:
            continue
        fits = True
        for k in range(d):
            if weights[k, i] > caps[k]:
                fits = False
                break
        if fits:
            cand[m] = i
            m += 1
    cand = cand[:m]
    if m == 0:
        return 0
    theta = _multipliers(values, weights, cand, caps)
    s0, order = _surrogate(values, weights, cand, caps, theta)
    items = cand[order]
    s = s0[order]
    v = values[items]
    w = np.empty((d, m), np.int64)
    for k in range(d):
        for j in range(m):
            w[k, j] = weights[k, items[j]]
    # per-row efficiency orders, as positions in the branching order
    row_order = np.empty((d, m), np.int64)
    row_ratio = np.empty(m)
    for k in range(d):
        for j in range(m):
            row_ratio[j] = v[j] / w[k, j] if w[k, j] > 0 else np.inf
        row_order[k] = np.argsort(-row_ratio, kind="mergesort")
    room0 = 0.0
    for k in range(d):
        if theta[k] > 0:
            room0 += theta[k]

    used = np.zeros(d, np.int64)
    x = np.zeros(m, np.int8)
    best_x = np.zeros(m, np.int8)
    best = 0.0
    for j in range(m):  # greedy incumbent
        if _fits(used, w, caps, j):
            for k in range(d):
                used[k] += w[k, j]
            best += v[j]
            best_x[j] = 1
    used[:] = 0

    deadline = _clock() + time_limit if time_limit > 0 else np.inf
    optimal = True
    # value of the decided items at each depth: summed once along the path, never undone, so
    # that its float error stays that of one sum however long the search
    prefix = np.zeros(m + 1)
    p = 0  # items at positions < p are decided (x), the others free
    nodes = 0
    while True:
        nodes += 1
        if nodes % _CLOCK_EVERY == 0:
            if abort[0]:
                return 2
            if deadline < np.inf and _clock() > deadline:
                optimal = False
                break
        room = room0 + _SLACK
        for k in range(d):
            if theta[k] > 0:
                room -= theta[k] * used[k] / caps[k]
        value = prefix[p]
        bound = value
        j = p
        while j < m:
            if s[j] <= room:
                room -= s[j]
                bound += v[j]
                j += 1
            else:
                bound += v[j] * room / s[j]
                break
        prune = bound <= best + gap
        if not prune:
            for k in range(d):
                left = caps[k] - used[k]
                bound = value
                for t in range(m):
                    q = row_order[k, t]
                    if q < p:
                        continue
                    if w[k, q] <= left:
                        left -= w[k, q]
                        bound += v[q]
                    else:
                        bound += v[q] * (left / w[k, q])
                        break
                if bound <= best + gap:
                    prune = True
                    break
        if not prune and p == m:  # a leaf that beats the incumbent
            best = value
            best_x[:] = x
            prune = True
        if not prune:
            if _fits(used, w, caps, p):
                x[p] = 1
                prefix[p + 1] = value + v[p]
                for k in range(d):
                    used[k] += w[k, p]
            else:
                x[p] = 0
                prefix[p + 1] = value
            p += 1
            continue
        # backtrack to the deepest "take" whose "leave" branch is still open
        q = p - 1
        while q >= 0 and x[q] == 0:
            q -= 1
        if q < 0:
            break
        x[q] = 0
        prefix[q + 1] = prefix[q]
        for k in range(d):
            used[k] -= w[k, q]
        x[q + 1 : p] = 0
        p = q + 1
    for j in range(m):
        if best_x[j]:
            x_out[items[j]] = 1
    return 0 if optimal else 1


@njit(cache=True, nogil=True)
def solve_batch(values, weights, which, caps, gaps, time_limit, x_out, ends, abort):
    """Rows of ``values`` (float64, ``(B, n)``) into rows of ``x_out`` (int8), row ``b`` with the
    weights ``weights[which[b]]`` (int64, ``(W, d, n)``), capacities ``caps[b]`` (int64,
    ``(B, d)``) and ``gaps[b]``; ``ends[b]`` as :func:`_solve` returns.
    ``time_limit`` is seconds per instance, ``<= 0`` for none. Runs
    without the GIL, and stops at the next look at the clock once ``abort[0]`` is set (by another
    thread): the rows not reached keep their ``ends``."""
    for b in range(values.shape[0]):
        if abort[0]:
            return
        ends[b] = _solve(values[b], weights[which[b]], caps[b], gaps[b], time_limit, x_out[b], abort)
