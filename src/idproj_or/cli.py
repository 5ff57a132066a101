"""Command line: ``idproj-or demo knapsack|tsp|shortest-path``.

Each demo runs the matching module of :mod:`idproj_or.demos` (shipped in the package, so it runs
from any install; ``examples/*.py`` of the source checkout are the same modules) with small, fast
defaults (one seed, test regret only before and after training, 2 solver processes), prints the
table and the normalized test regret, and says where the plot and the JSON are: under
``runs/demo/<name>/`` of the current directory unless ``--out`` says otherwise. Extra arguments
after ``--`` go to the example (``idproj-or demo knapsack -- --seeds 0 1 2``).

Example:
    $ idproj-or demo knapsack
    ...
    knapsack: normalized test regret 3.39% (two-stage 4.01%, Bayes floor 3.24%)
    plot: runs/demo/knapsack/curves.png
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# demo name -> (module of idproj_or.demos, its arguments for a run of under 2 minutes on 2 cores)
DEMOS: dict[str, tuple[str, list[str]]] = {
    "knapsack": ("knapsack", ["--seeds", "0", "--eval-every", "0"]),
    "tsp": ("tsp", ["--seeds", "0", "--nodes", "50", "--train", "200", "--test", "100", "--eval-every", "0"]),
    "shortest-path": ("shortest_path", ["--seeds", "0"]),
}


def load_demo(name: str) -> ModuleType:
    """The module ``idproj_or.demos.<module>`` of demo ``name``.

    Raises:
        ValueError: unknown demo, or matplotlib (which draws the plots) is not installed.
    """
    if name not in DEMOS:
        raise ValueError(f"idproj-or demo: unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(
            f"idproj-or demo {name}: the demos draw their plots with matplotlib (the 'examples' extra): "
            "pip install matplotlib"
        )
    return importlib.import_module(f"idproj_or.demos.{DEMOS[name][0]}")


def _headline(name: str, results: dict[str, Any]) -> str:
    summary: dict[str, dict[str, Any]] = results["summary"]
    trained = [label for label in summary if label not in ("two-stage", "oracle E[c|x]")]
    parts = [f"{name}: normalized test regret {summary[trained[0]]['mean']:.2%} ({trained[0]}"]
    if "two-stage" in summary:
        parts.append(f"; two-stage {summary['two-stage']['mean']:.2%}")
    if "oracle E[c|x]" in summary:
        parts.append(f"; Bayes floor {summary['oracle E[c|x]']['mean']:.2%}")
    return "".join(parts) + ")"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``idproj-or`` console script.

    Returns:
        the process exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="idproj-or", description="idproj_or command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train an example end to end and print its regret",
        description="Run an example with fast defaults; arguments after -- go to the example.",
    )
    demo.add_argument("name", choices=list(DEMOS), help="which example")
    demo.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/demo/<name> of the current directory)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        module = load_demo(args.name)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    out = args.out or Path("runs") / "demo" / args.name
    example_args = DEMOS[args.name][1] + ["--out", str(out)] + (["--quiet"] if args.quiet else []) + extra
    results = module.main(example_args)
    print(_headline(args.name, results))
    print(f"plot: {results['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
