"""Learn knapsack item values from features, training end to end through CP-SAT (``CpSatLayer``).

PyEPO's knapsack benchmark: 32 items, 2 capacity dimensions, values from a degree-4 polynomial of
5 features with noise; a linear model predicts the values and the loss is taken on the decision
the solver returns. Prints the normalized test regret next to the two-stage baseline and the
Bayes floor; writes ``<out>/results.json`` and ``<out>/curves.png``.

    python examples/knapsack.py                # default projection "auto", seeds 0 1 2, baselines
    python examples/knapsack.py --compare      # + the projection ablation (none, norm, std)
    python examples/knapsack.py --help

The code (the CP-SAT model, the training runs) is the module ``idproj_or.demos.knapsack``
(src/idproj_or/demos/knapsack.py), shipped in the package so that ``idproj-or demo knapsack``
runs from any install; this script is its command line.
"""

from idproj_or.demos.knapsack import main

if __name__ == "__main__":
    main()
