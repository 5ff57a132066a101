"""Training helpers, the demos (idproj_or.demos, run by examples/*.py) and the command line: a tiny
run lowers regret; --help works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import cli, data, training
from idproj_or.demos import _harness

ROOT = Path(__file__).resolve().parents[1]


def _top_k_layer(n: int = 6, k: int = 2, **options) -> ipo.CpSatLayer:
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(x) == k)
    return ipo.CpSatLayer(m, x, sense="max", **options)


def _top_k_data(n_data: int, seed: int) -> data.OptDataset:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_data, 3, generator=g)
    true = feats @ torch.randn(3, 6, generator=g) + 0.1 * torch.randn(n_data, 6, generator=g)
    return data.solve_dataset(_top_k_layer(), feats, true, progress=False)


def test_decision_loss_values_and_sign():
    y = torch.tensor([[1.0, 0.0, 1.0]])
    c = torch.tensor([[2.0, 3.0, 4.0]])
    star = torch.tensor([[0.0, 1.0, 1.0]])
    assert training.decision_loss("regret", y, c, star, sense="max").item() == -6.0
    assert training.decision_loss("regret", y, c, star, sense="min").item() == 6.0
    assert training.decision_loss("hamming", y, c, star, sense="max").item() == 2.0
    with pytest.raises(ValueError, match="decision_loss: loss='l2'"):
        training.decision_loss("l2", y, c, star, sense="max")


@pytest.mark.parametrize("loss", ["regret", "hamming"])
def test_fit_lowers_regret(loss):
    ds = _top_k_data(160, 0)
    train, test = ds.subset(slice(0, 100)), ds.subset(slice(100, None))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 6)
    history = training.fit(
        model,
        _top_k_layer(projection="auto", noise=0.05, generator=torch.Generator().manual_seed(0)),
        train,
        test,
        loss=loss,
        epochs=4,
        lr=0.05,
        batch_size=10,
        progress=False,
    )
    assert history.epochs == [0, 1, 2, 3, 4] and len(history.train_regret) == 4
    assert history.untrained is not None and history.untrained > 0.2
    assert history.final < 0.5 * history.untrained
    assert history.train_regret[-1] < history.train_regret[0]


def test_fit_two_stage_is_least_squares_and_oracle_is_floor():
    ds = _top_k_data(200, 1)
    train, test = ds.subset(slice(0, 150)), ds.subset(slice(150, None))
    model = torch.nn.Linear(3, 6)
    history = training.fit_two_stage(model, _top_k_layer(), train, test)
    x = torch.cat([train.features.double(), torch.ones(150, 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(x, train.costs.double()).solution
    torch.testing.assert_close(model.weight.detach().double(), coef[:-1].T, rtol=1e-4, atol=1e-4)
    assert history.epochs == [] and history.untrained is None and 0 <= history.final < 0.2
    assert training.oracle(_top_k_layer(), test.costs, test).final == 0.0  # deciding on the truth
    with pytest.raises(ValueError, match=r"fit_two_stage: predictor must be a torch.nn.Linear"):
        training.fit_two_stage(torch.nn.Sequential(torch.nn.Linear(3, 6)), _top_k_layer(), train, test)


def test_fit_errors():
    ds = _top_k_data(10, 2)
    with pytest.raises(ValueError, match="fit: loss='mse'"):
        training.fit(torch.nn.Linear(3, 6), _top_k_layer(), ds, ds, loss="mse", progress=False)
    with pytest.raises(ValueError, match="fit: epochs=-1"):
        training.fit(torch.nn.Linear(3, 6), _top_k_layer(), ds, ds, epochs=-1, progress=False)


def test_summary_table_and_plot(tmp_path):
    runs = [
        training.History("auto", 0, [0, 1], [0.4, 0.1], [0.2], 1.0),
        training.History("auto", 1, [0, 1], [0.5, 0.2], [0.3], 3.0),
        training.History("two-stage", 0, [], [0.3], [], 0.5),
    ]
    s = _harness.summarize(runs)
    assert s["auto"]["mean"] == pytest.approx(0.15) and s["auto"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert s["auto"]["seeds"] == [0, 1] and s["auto"]["untrained"] == pytest.approx(0.45)
    assert s["two-stage"]["untrained"] is None and s["two-stage"]["std"] == 0.0
    table = _harness.format_table(s)
    assert "| auto | 15.00% | 7.07% | 10.00% | 20.00% | 2 | 45.00% | 2.0 |" in table
    assert "| two-stage | 30.00% | 0.00% | 30.00% | 30.00% | 1 | - | 0.5 |" in table
    path = _harness.plot_histories(runs, tmp_path / "sub" / "c.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_knapsack_example_tiny_run_lowers_regret(tmp_path):
    example = cli.load_demo("knapsack")
    results = example.main(
        [
            "--seeds",
            "0",
            "--items",
            "10",
            "--train",
            "120",
            "--test",
            "80",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--lr",
            "0.05",
            "--workers",
            "0",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    s = results["summary"]
    assert set(s) == {"auto (regret)", "two-stage", "oracle E[c|x]"}
    assert s["auto (regret)"]["mean"] < 0.5 * s["auto (regret)"]["untrained"]
    assert s["oracle E[c|x]"]["mean"] <= s["two-stage"]["mean"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["auto (regret)"]["mean"] == s["auto (regret)"]["mean"]
    assert (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize(
    ("name", "args", "labels"),
    [
        ("shortest_path", ["--grid", "3", "3"], {"auto (regret)", "two-stage", "oracle E[c|x]"}),
        ("tsp", ["--nodes", "6"], {"none (hamming)", "two-stage", "oracle E[c|x]"}),
        (
            "tsp",
            ["--nodes", "7", "--method", "routing", "--no-baselines", "--loss", "regret", "--projection", "auto"],
            {"auto (regret)"},
        ),
    ],
    ids=["shortest_path", "tsp", "tsp-routing"],
)
def test_other_examples_tiny_run_lowers_regret(tmp_path, name, args, labels):
    example = cli.load_demo({"shortest_path": "shortest-path"}.get(name, name))
    results = example.main(
        args
        + [
            "--seeds",
            "0",
            "--train",
            "100",
            "--test",
            "40",
            "--epochs",
            "3",
            "--batch-size",
            "10",
            "--lr",
            "0.05",
            "--workers",
            "0",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    s = results["summary"]
    assert set(s) == labels
    trained = next(label for label in labels if label not in ("two-stage", "oracle E[c|x]"))
    assert s[trained]["mean"] < 0.5 * s[trained]["untrained"]
    assert (tmp_path / "curves.png").is_file()


def test_tsp_edge_model_is_symmetric_and_differentiable():
    example = cli.load_demo("tsp")
    model = example.EdgeModel(3, 5, init_scale=0.5)
    out = model(torch.randn(4, 3))
    assert out.shape == (4, 5, 5)
    torch.testing.assert_close(out, out.transpose(1, 2))
    assert torch.all(torch.diagonal(out, dim1=1, dim2=2) == 0)
    out[:, 0, 1].sum().backward()
    assert model.linear.bias.grad is not None and model.linear.bias.grad[0] == 4.0  # edge (0, 1) only
    assert model.linear.bias.grad[1:].abs().sum() == 0


def test_cli_demo_runs_example_with_passthrough(tmp_path, capsys):
    code = cli.main(
        [
            "demo",
            "knapsack",
            "--quiet",
            "--out",
            str(tmp_path),
            "--",
            "--items",
            "8",
            "--train",
            "40",
            "--test",
            "40",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--no-baselines",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "knapsack: normalized test regret" in out and f"plot: {tmp_path / 'curves.png'}" in out
    assert json.loads((tmp_path / "results.json").read_text())["config"]["items"] == 8


def test_cli_help_and_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0 and "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0 and "shortest-path" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "sudoku"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="idproj-or demo: unknown demo 'sudoku'"):
        cli.load_demo("sudoku")
    assert cli.load_demo("shortest-path").__name__ == "idproj_or.demos.shortest_path"
    find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else find_spec(n, *a))
    assert cli.main(["demo", "knapsack"]) == 2
    assert "matplotlib (the 'examples' extra): pip install matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["knapsack", "shortest_path", "tsp"])
def test_example_script_help(name):
    """examples/<name>.py is the command line of idproj_or.demos.<name>."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "--projection" in out and "--compare" in out
    assert {"knapsack": "CpSatLayer", "shortest_path": "CvxpyLayer", "tsp": "TSPLayer"}[name] in out
