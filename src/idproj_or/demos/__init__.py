"""The learning examples, shipped in the package so that ``idproj-or demo`` runs from any install.

One module per problem, each a complete script (``main(argv)`` parses the options, trains every
method for every seed and writes ``results.json`` and ``curves.png``):

- :mod:`idproj_or.demos.knapsack`: 2-dimensional 0/1 knapsack declared in CP-SAT (``CpSatLayer``);
- :mod:`idproj_or.demos.shortest_path`: grid shortest path, an LP declared in CVXPY (``CvxpyLayer``);
- :mod:`idproj_or.demos.tsp`: TSP through ``TSPLayer`` (exact, or the routing heuristic).

``python -m idproj_or.demos.knapsack --help`` lists the options; the source checkout's
``examples/*.py`` run the same modules. The shared tables, plots and options are in ``_harness``
(example code, not library API). The plots need matplotlib (the ``examples`` extra).
"""
