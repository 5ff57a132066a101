"""The harness the demos share: summary table, learning-curve plot, command-line options, report.

Example code, not library API (the library part, :func:`idproj_or.training.fit` and friends,
returns the :class:`~idproj_or.training.History` objects this module tabulates and draws).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import data, training
from ..rules.identity import OptLayer
from ..training import LOSSES, History


def cached(key: str, fn: Callable[[], dict[str, Any]], folder: Path) -> dict[str, Any]:
    """``fn()``'s result, from ``<folder>/<key>.json`` when it is there (written on first run)."""
    path = folder / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = fn()
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def train_all(
    args: argparse.Namespace,
    *,
    projections: Sequence[str],
    generate: Callable[[int], Any],
    build_layer: Callable[..., OptLayer],
    model: Callable[[Any], torch.nn.Module],
    two_stage_model: Callable[[Any], torch.nn.Linear],
    chunk: int = 200,
) -> list[History]:
    """Every requested method for every seed of ``args``: label the data, train one layer per
    projection, then the two-stage and oracle baselines.

    ``generate(seed)`` returns the data (``features``, ``costs``, ``expected``);
    ``build_layer(d, **options)`` the demo's layer over that data; ``model(d)`` and
    ``two_stage_model(d)`` fresh predictors (the first built after seeding torch with the seed).
    """
    workers = args.workers or None
    chosen = [args.projection] + ([q for q in projections if q != args.projection] if args.compare else [])
    histories: list[History] = []
    for seed in args.seeds:
        d = generate(seed)
        # One model, built once; each projection is a layer over it (the workers cache the
        # solver by the model's content, so they build it only once).
        label_layer = build_layer(d, workers=workers)
        ds = data.solve_dataset(
            label_layer, d.features, d.costs, chunk=chunk, progress=not args.quiet, desc=f"seed {seed}: labels"
        )
        train, test = ds.subset(slice(0, args.train)), ds.subset(slice(args.train, None))
        for projection in chosen:
            layer = build_layer(
                d,
                projection=projection,
                noise=args.noise,
                workers=workers,
                generator=torch.Generator().manual_seed(seed),
            )
            torch.manual_seed(seed)
            histories.append(
                training.fit(
                    model(d),
                    layer,
                    train,
                    test,
                    loss=args.loss,
                    epochs=args.epochs,
                    lr=args.lr,
                    batch_size=args.batch_size,
                    seed=seed,
                    eval_every=args.eval_every,
                    label=f"{projection} ({args.loss})",
                    progress=not args.quiet,
                    noise_epochs=args.noise_epochs,
                )
            )
        if not args.no_baselines:
            histories.append(training.fit_two_stage(two_stage_model(d), label_layer, train, test, seed=seed))
            histories.append(training.oracle(label_layer, torch.as_tensor(d.expected[args.train :]), test, seed=seed))
    return histories


def summarize(histories: Sequence[History]) -> dict[str, dict[str, Any]]:
    """Final test regret per label over seeds: mean, sample std, min, max, seeds, seconds."""
    by_label: dict[str, list[History]] = {}
    for h in histories:
        by_label.setdefault(h.label, []).append(h)
    out: dict[str, dict[str, Any]] = {}
    for label, runs in by_label.items():
        finals = [h.final for h in runs]
        out[label] = {
            "mean": statistics.fmean(finals),
            "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "min": min(finals),
            "max": max(finals),
            "seeds": [h.seed for h in runs],
            "untrained": _mean_or_none([h.untrained for h in runs]),
            "seconds": statistics.fmean(h.seconds for h in runs),
        }
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize`'s output (regrets in %)."""
    lines = [
        "| method | test regret (mean) | std | min | max | seeds | untrained | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, s in summary.items():
        untrained = "-" if s["untrained"] is None else f"{s['untrained']:.2%}"
        lines.append(
            f"| {label} | {s['mean']:.2%} | {s['std']:.2%} | {s['min']:.2%} | {s['max']:.2%} | "
            f"{len(s['seeds'])} | {untrained} | {s['seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot_histories(histories: Sequence[History], path: str | Path, *, title: str) -> Path:
    """Learning curves as a PNG: normalized test regret per epoch (solid; mean over seeds, band
    min..max), the regret of the training decisions per epoch (dotted), and baselines without
    epochs (two-stage, oracle) as horizontal lines.

    Returns:
        the path written.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label: dict[str, list[History]] = {}
    for h in histories:
        by_label.setdefault(h.label, []).append(h)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    styles = iter(["--", "-.", (0, (5, 1, 1, 1))])
    for label, runs in by_label.items():
        epochs = runs[0].epochs
        curves = torch.tensor([h.test_regret for h in runs if h.epochs == epochs], dtype=torch.float64) * 100
        mean = curves.mean(dim=0)
        if not epochs:
            ax.axhline(float(mean[-1]), ls=next(styles, "--"), color="gray", label=f"{label} ({float(mean[-1]):.2f}%)")
            continue
        (line,) = ax.plot(epochs, mean, marker="o", label=f"{label} ({float(mean[-1]):.2f}%)")
        if len(curves) > 1:
            ax.fill_between(
                epochs, curves.min(dim=0).values, curves.max(dim=0).values, color=line.get_color(), alpha=0.2
            )
        train = torch.tensor([h.train_regret for h in runs], dtype=torch.float64).mean(dim=0) * 100
        ax.plot(range(1, len(train) + 1), train, ls=":", color=line.get_color(), alpha=0.8)
    if any(h.epochs for h in histories):
        ax.plot([], [], ls=":", color="black", label="training decisions (dotted)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalized regret (%)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    projections: Sequence[str],
    out: str,
    seeds: Sequence[int] = (0, 1, 2),
    train: int = 1000,
    test: int = 1000,
    epochs: int = 5,
    loss: str = "regret",
    noise: float = 0.0,
    projection: str = "auto",
) -> None:
    """The command-line options every example shares (seeds, sizes, optimiser, projection,
    loss, noise, workers, output); the keyword arguments are their defaults."""
    p = parser
    p.add_argument("--seeds", type=int, nargs="+", default=list(seeds), help="one run per seed (data, init, order)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train", type=int, default=train, help="training instances")
    p.add_argument("--test", type=int, default=test, help="test instances")
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--deg", type=int, default=4, help="polynomial degree of the true costs")
    p.add_argument("--noise-width", type=float, default=0.5, help="half-width of the data noise")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loss", choices=LOSSES, default=loss, help="loss on the decision")
    p.add_argument("--projection", choices=list(projections), default=projection)
    p.add_argument("--noise", type=float, default=noise, help="training-only margin of the layer (noise=)")
    p.add_argument(
        "--noise-epochs", type=int, default=None, help="the margin in the first k epochs only (default: all)"
    )
    p.add_argument(
        "--compare", action="store_true", help=f"also train with every other projection of {list(projections)}"
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the two-stage and oracle rows")
    p.add_argument("--eval-every", type=int, default=1, help="test every k epochs (0: only before/after)")
    p.add_argument("--workers", type=int, default=2, help="solver processes (0: solve in-process)")
    p.add_argument("--out", type=Path, default=Path(out), help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def timed_report(
    run: Callable[[argparse.Namespace], list[History]], args: argparse.Namespace, *, title: str
) -> dict[str, Any]:
    """``run(args)`` timed, then :func:`report`; ``title`` is formatted with the options (e.g.
    ``"{items} items"``)."""
    start = time.perf_counter()
    histories = run(args)
    return report(histories, args, title=title.format(**vars(args)), seconds=time.perf_counter() - start)


def report(histories: Sequence[History], args: argparse.Namespace, *, title: str, seconds: float) -> dict[str, Any]:
    """Write ``<args.out>/results.json`` and ``curves.png``, print the table; return the results."""
    results: dict[str, Any] = {
        "title": title,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summarize(histories),
        "histories": [h.to_dict() for h in histories],
        "seconds": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results["plot"] = str(plot_histories(histories, args.out / "curves.png", title=title))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(format_table(results["summary"]))
    print(f"seeds {args.seeds}; {seconds:.0f} s; results {args.out / 'results.json'}; plot {results['plot']}")
    return results


def compare_on(
    layer: OptLayer, ds: data.OptDataset, expected: Any, args: argparse.Namespace, seed: int
) -> list[History]:
    """Decision-focused training (a linear predictor through ``layer``), the two-stage baseline
    and the oracle floor on one labelled data set: its first ``args.train`` instances train, the
    rest test; ``expected`` is ``E[c | x]`` of every instance."""
    train, test = ds.subset(slice(0, args.train)), ds.subset(slice(args.train, None))
    n_in, n_out = ds.features.shape[1], ds.costs[0].numel()
    torch.manual_seed(seed)
    trained = training.fit(
        torch.nn.Linear(n_in, n_out),
        layer,
        train,
        test,
        epochs=args.epochs,
        seed=seed,
        eval_every=0,
        label="decision-focused",
        progress=not args.quiet,
    )
    two_stage = training.fit_two_stage(torch.nn.Linear(n_in, n_out), layer, train, test, seed=seed)
    floor = training.oracle(layer, torch.as_tensor(expected[args.train :]), test, seed=seed)
    return [trained, two_stage, floor]


def small_example(
    argv: list[str] | None, description: str, run_seed: Callable[[int, argparse.Namespace], list[History]]
) -> dict[str, dict[str, Any]]:
    """The command line of a small example: sizes and seeds from ``argv``, ``run_seed`` per seed,
    the table printed; returns :func:`summarize`'s output."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", type=int, default=1000, help="training instances")
    p.add_argument("--test", type=int, default=1000, help="test instances")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (data, init, order)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    summary = summarize([h for seed in args.seeds for h in run_seed(seed, args)])
    print(format_table(summary))
    return summary
