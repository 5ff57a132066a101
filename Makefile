PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench paper docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -q -e ".[test,examples,docs,dask,routing]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python -m idproj_or.cli demo knapsack

bench: $(STAMP)
	$(PIP) -q -e ".[bench]"
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/instance_data.py
	$(BIN)/python benchmarks/compile.py
	$(BIN)/python benchmarks/compare_pyepo.py
	$(BIN)/python benchmarks/rules.py
	$(BIN)/python benchmarks/tsp_solvers.py
	$(BIN)/python benchmarks/grid_path.py
	$(BIN)/python benchmarks/mathopt.py
	$(BIN)/python benchmarks/vrp.py
	$(BIN)/python benchmarks/vrp_learning.py
	$(BIN)/python benchmarks/warm_start.py

# The paper's experiments (examples/paper/, cached under benchmarks/results/paper/), then docs/paper.md
paper: $(STAMP)
	$(BIN)/python examples/paper/dvae.py
	$(BIN)/python examples/paper/l2x.py
	$(BIN)/python examples/paper/globe_tsp.py
	$(BIN)/python examples/paper/graph_matching.py
	$(BIN)/python examples/paper/ranking.py
	$(BIN)/python examples/paper/warcraft.py
	$(BIN)/python examples/paper/report.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build
