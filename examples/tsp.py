"""Learn TSP edge costs from features, training end to end through ``TSPLayer``.

PyEPO's TSP benchmark: symmetric edge costs = Euclidean distance + a polynomial of 5 features,
with noise; a linear model predicts the edge costs and the loss is taken on the tour. Exact tours
(CP-SAT, default 20 cities) or OR-Tools' routing heuristic (``--method routing``). Prints the
normalized test regret next to the two-stage baseline and the Bayes floor; writes
``<out>/results.json`` and ``<out>/curves.png``.

    python examples/tsp.py                                    # 20 cities, exact, seeds 0 1 2
    python examples/tsp.py --method routing --nodes 50        # heuristic mode
    python examples/tsp.py --compare                          # + none, norm, std

The code (the edge model, the training runs) is the module ``idproj_or.demos.tsp``
(src/idproj_or/demos/tsp.py), shipped in the package so that ``idproj-or demo tsp`` runs from
any install; this script is its command line.
"""

from idproj_or.demos.tsp import main

if __name__ == "__main__":
    main()
