"""What the paper experiments share: one thread, seeding, result caching, mean ± std, solve
counting, progress and figures.

Each experiment caches one JSON file per (setting, seed) run under ``benchmarks/results/paper/``
(a rerun skips what is there; delete a file to redo that run) and writes its summary to
``benchmarks/results/paper/<experiment>.json``, which ``report.py`` turns into docs/paper.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from idproj_or.demos._harness import cached

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "paper"
IMG = ROOT / "docs" / "img"


def setup() -> None:
    """One intra-op thread: the machine is shared and runs are timed one process at a time."""
    torch.set_num_threads(1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_grid(
    name: str,
    settings: dict[str, dict[str, Any]],
    seeds: Iterable[int],
    train: Callable[..., dict[str, Any]],
    folder: Path,
    *,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """``train(seed=seed, **setting)`` for every setting and seed, each run cached as
    ``<folder>/<name>/<setting>-s<seed>.json``; returns the runs per setting."""
    seeds = list(seeds)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in settings}
    jobs = [(key, seed) for seed in seeds for key in settings]
    for key, seed in tqdm(jobs, desc=name, disable=not progress):
        runs[key].append(cached(f"{key}-s{seed}", partial(train, seed=seed, **settings[key]), folder / name))
    return runs


def mean_std(values: Iterable[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one value), with the values."""
    v = [float(x) for x in values]
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v}


def pm(stat: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` of a :func:`mean_std` result, in percent by default."""
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def ahead(x: dict[str, Any], y: dict[str, Any]) -> bool:
    """``x``'s mean above ``y``'s by more than the larger of their spreads (:func:`mean_std` results)."""
    return x["mean"] > y["mean"] + max(x["std"], y["std"])


def verdict(strong: bool, weak: bool) -> str:
    return "reproduced" if strong else "partly" if weak else "not"


def write_summary(name: str, summary: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(summary, indent=1))
    return path


class SolveCounter:
    """Counts the solver calls of a layer (batches and instances) and their seconds, by
    wrapping its handle's batch solve; the rules reach the solver only through it."""

    def __init__(self, layer: Any) -> None:
        self.batches = 0
        self.instances = 0
        self.seconds = 0.0
        handle = layer.handle
        inner = handle.solve_numpy

        def counted(z: Any, raw: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = inner(z, raw, **kwargs)
            self.seconds += time.perf_counter() - start
            self.batches += 1
            self.instances += len(z)
            return out

        handle.solve_numpy = counted

    def reset(self) -> None:
        self.batches, self.instances, self.seconds = 0, 0, 0.0


def figure(ncols: int, *, width: float = 4.2, height: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), dpi=120, squeeze=False)
    return fig, axes[0]


def save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cli(
    name: str,
    doc: str,
    run: Callable[..., dict[str, Any]],
    plot: Callable[[dict[str, Any], Path], Path],
    details: Callable[[dict[str, Any]], str],
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """The command line every experiment shares: run (cached), plot, print the table."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run of every kind of setting")
    parser.add_argument(
        "--out", type=Path, help="results folder (default benchmarks/results/paper; --tiny: a temp folder)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    folder = args.out or (Path(tempfile.mkdtemp(prefix="paper_tiny_")) if args.tiny else RESULTS)
    summary = run(args.seeds, tiny=args.tiny, folder=folder, progress=not args.quiet)
    image = plot(summary, folder / f"{name}.png" if args.tiny else IMG / f"paper_{name}.png")
    print(details(summary))
    print(f"results: {folder / name}.json, plot: {image}")
    return summary
