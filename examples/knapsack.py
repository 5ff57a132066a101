"""Learn knapsack item values from features, training end to end through CP-SAT.

The setting of PyEPO's knapsack benchmark (Tang & Khalil, arXiv 2206.14234): 32 items, 2 capacity
dimensions (each capacity is half the total weight), values from a degree-4 polynomial of 5
features with multiplicative noise of half-width 0.5. A linear model predicts the 32 values; the
knapsack is an ordinary CP-SAT model wrapped in ``CpSatLayer`` (identity with projection), and the
loss is taken on the decision the solver returns.

    python examples/knapsack.py                # default projection "auto", seeds 0 1 2, baselines
    python examples/knapsack.py --compare      # + the projection ablation (none, norm, std)
    python examples/knapsack.py --help

Writes ``<out>/results.json`` and ``<out>/curves.png`` and prints a table of the normalized test
regret (mean and spread over seeds) next to the two-stage baseline (least squares, then solve) and
the Bayes floor (deciding on the true ``E[c | x]``, which no predictor beats in expectation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data, training

# A knapsack has no equality constraints: "auto" equals "norm"; "std" (mean-centring) is not
# a valid invariance here (feasible sets have different sizes) and is shown for contrast.
PROJECTIONS = ("none", "norm", "std", "auto")


def build_layer(weights: np.ndarray, capacities: np.ndarray, **options: Any) -> ipo.CpSatLayer:
    """The multi-dimensional knapsack ``max v.x s.t. W x <= cap, x in {0,1}^n`` as a layer.

    PyEPO's weights have two decimals; CP-SAT needs integers, so both sides are scaled by 100
    (the capacity rounded down on that scale, which keeps the feasible set exactly).
    """
    w = np.rint(np.asarray(weights) * 100).astype(int)
    cap = np.floor(np.asarray(capacities) * 100 + 1e-9).astype(int)
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(w.shape[1])]
    for k in range(w.shape[0]):
        model.add(sum(int(w[k, i]) * x[i] for i in range(w.shape[1])) <= int(cap[k]))
    return ipo.CpSatLayer(model, x, sense="max", **options)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Knapsack (PyEPO setting) trained through CpSatLayer with identity + projection.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (data, init, order)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train", type=int, default=1000, help="training instances")
    p.add_argument("--test", type=int, default=1000, help="test instances")
    p.add_argument("--items", type=int, default=32)
    p.add_argument("--dim", type=int, default=2, help="capacity dimensions")
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--deg", type=int, default=4, help="polynomial degree of the true values")
    p.add_argument("--noise-width", type=float, default=0.5, help="half-width of the data noise")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loss", choices=training.LOSSES, default="regret", help="loss on the decision")
    p.add_argument("--projection", choices=PROJECTIONS, default="auto")
    p.add_argument("--noise", type=float, default=0.0, help="training-only margin of the layer (noise=)")
    p.add_argument("--compare", action="store_true", help="also train with every other projection")
    p.add_argument("--no-baselines", action="store_true", help="skip the two-stage and oracle rows")
    p.add_argument("--eval-every", type=int, default=1, help="test every k epochs (0: only before/after)")
    p.add_argument("--workers", type=int, default=2, help="solver processes (0: solve in-process)")
    p.add_argument("--out", type=Path, default=Path("runs/knapsack"), help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[training.History]:
    """Train and evaluate every requested method for every seed."""
    workers = args.workers or None
    projections = [args.projection] + ([q for q in PROJECTIONS if q != args.projection] if args.compare else [])
    histories: list[training.History] = []
    for seed in args.seeds:
        d = data.knapsack(
            args.train + args.test, args.features, args.items,
            dim=args.dim, deg=args.deg, noise_width=args.noise_width, seed=seed,
        )
        # One model, built once; each projection is a layer over it (the workers cache the
        # solver by the model's content, so they build it only once).
        label_layer = build_layer(d.weights, d.capacities, workers=workers)
        ds = data.solve_dataset(label_layer, d.features, d.costs, progress=not args.quiet, desc=f"seed {seed}: labels")
        train, test = ds.subset(slice(0, args.train)), ds.subset(slice(args.train, None))
        for projection in projections:
            layer = build_layer(
                d.weights, d.capacities, projection=projection, noise=args.noise, workers=workers,
                generator=torch.Generator().manual_seed(seed),
            )
            torch.manual_seed(seed)
            model = torch.nn.Linear(args.features, args.items)
            histories.append(
                training.fit(
                    model, layer, train, test, loss=args.loss, epochs=args.epochs, lr=args.lr,
                    batch_size=args.batch_size, seed=seed, eval_every=args.eval_every,
                    label=f"{projection} ({args.loss})", progress=not args.quiet,
                )
            )
        if not args.no_baselines:
            histories.append(training.fit_two_stage(torch.nn.Linear(args.features, args.items), label_layer, train, test, seed=seed))
            expected = torch.as_tensor(d.expected[args.train :])
            histories.append(training.oracle(label_layer, expected, test, seed=seed))
    return histories


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    histories = run(args)
    results: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": training.summarize(histories),
        "histories": [h.to_dict() for h in histories],
        "seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot = training.plot_histories(
        histories, args.out / "curves.png",
        title=f"knapsack {args.items}x{args.dim}, deg {args.deg}, noise {args.noise_width}",
    )
    results["plot"] = str(plot)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(training.format_table(results["summary"]))
    print(f"seeds {args.seeds}; {results['seconds']:.0f} s; results {args.out / 'results.json'}; plot {plot}")
    return results


if __name__ == "__main__":
    main()
