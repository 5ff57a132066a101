"""Learn arc lengths of a 5x5 grid from features; the shortest path is an LP declared in CVXPY.

PyEPO's shortest-path benchmark: 40 arcs, costs from a degree-4 polynomial of 5 features with
noise; a linear model predicts the costs, the LP is wrapped in ``CvxpyLayer`` (HiGHS) and the
loss is taken on the path. Prints the normalized test regret next to the two-stage baseline and
the Bayes floor; writes ``<out>/results.json`` and ``<out>/curves.png``.

    python examples/shortest_path.py               # default "auto", seeds 0 1 2, baselines
    python examples/shortest_path.py --compare     # + none, norm, std
    python examples/shortest_path.py --help

The code (the CVXPY model, the training runs) is the module ``idproj_or.demos.shortest_path``
(src/idproj_or/demos/shortest_path.py), shipped in the package so that
``idproj-or demo shortest-path`` runs from any install; this script is its command line.
"""

from idproj_or.demos.shortest_path import main

if __name__ == "__main__":
    main()
