"""OR-Tools and highspy each ship a HiGHS library under the same name: only matching versions
load in one process. The pins in pyproject.toml keep them matching; this test guards them."""

import subprocess
import sys

import pytest

IMPORTS = {
    "ortools": "from ortools.linear_solver import pywraplp; from ortools.sat.python import cp_model",
    "highspy": "import highspy; highspy.Highs()",
    "cvxpy": "import cvxpy as cp; x = cp.Variable(2, boolean=True); "
    "cp.Problem(cp.Maximize(cp.sum(x)), [cp.sum(x) <= 1]).solve(solver='HIGHS')",
}


@pytest.mark.parametrize("order", [("ortools", "highspy", "cvxpy"), ("highspy", "cvxpy", "ortools")])
def test_ortools_and_highspy_load_in_one_process_in_any_order(order):
    code = "; ".join(IMPORTS[name] for name in order)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
