"""Synthetic predict-then-optimise data following PyEPO's published generators.

The formulas are those of Tang & Khalil, "PyEPO" (arXiv 2206.14234) and its ``pyepo.data``
module, so that regrets measured here can be compared with PyEPO's. The random stream differs
(numpy ``Generator`` instead of ``RandomState``): the same seed gives the same data here on every
run, not the same numbers as PyEPO's ``genData``. docs/data.md states every formula.

Every generator draws the *ground truth* (the matrix ``B``, item weights, city coordinates) and
``num_data`` feature/cost pairs from one seed; draw train and test together and split them, so
that both share one ground truth.

:func:`solve_dataset` solves the true costs once through a layer and returns an
:class:`OptDataset` of tensors ``(features, costs, solutions, objectives)``;
:func:`solve_knn_dataset` builds the kNN-robust targets of Schutte et al. (2024) instead (PyEPO's
``optDatasetKNN``), from the combined costs of :func:`knn_costs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from scipy.spatial import distance
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .rules.identity import OptLayer


class Synthetic(NamedTuple):
    """Features and true costs of ``num_data`` instances.

    ``features`` is ``(num_data, num_features)``; ``costs`` is ``(num_data, *cost_shape)``;
    ``expected`` is ``E[costs | features]`` (same shape): deciding on it is the best any predictor
    can do in expectation, so its regret is the floor that the noise sets.
    """

    features: np.ndarray
    costs: np.ndarray
    expected: np.ndarray


class KnapsackData(NamedTuple):
    """A multi-dimensional knapsack data set: fixed weights, feature-driven values, capacities
    fixed or one per instance.

    ``weights`` is ``(dim, num_items)`` (multiples of 0.01 in ``[3, 8)``), ``capacities`` is
    ``(dim,)`` or, per instance, ``(num_data, dim)`` (multiples of 0.01), ``features`` is ``(num_data, num_features)`` and ``costs`` (item values) is
    ``(num_data, num_items)``; ``expected`` is ``E[costs | features]`` (exact, rounding included).
    """

    weights: np.ndarray
    capacities: np.ndarray
    features: np.ndarray
    costs: np.ndarray
    expected: np.ndarray


class TSPData(NamedTuple):
    """A TSP data set: fixed city coordinates, feature-driven symmetric edge costs.

    ``coords`` is ``(num_nodes, 2)``, ``features`` is ``(num_data, num_features)`` and ``costs``
    is ``(num_data, num_nodes, num_nodes)``: symmetric, zero diagonal, ``costs[k, i, j]`` the cost
    of travelling between ``i`` and ``j`` (what :class:`idproj_or.TSPLayer` takes); ``expected``
    is ``E[costs | features]`` (up to the 4-decimal rounding).
    """

    coords: np.ndarray
    features: np.ndarray
    costs: np.ndarray
    expected: np.ndarray


def _check(where: str, num_data: int, num_features: int, deg: int, noise_width: float) -> None:
    for name, value in (("num_data", num_data), ("num_features", num_features), ("deg", deg)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name}={value!r} must be a positive int")
    if not (isinstance(noise_width, (int, float)) and 0.0 <= noise_width <= 1.0):
        raise ValueError(f"{where}: noise_width={noise_width!r} must be a number in [0, 1]")


def _polynomial(x: np.ndarray, b: np.ndarray, deg: int) -> np.ndarray:
    """``(x B^T / sqrt(p) + 3) ** deg`` for every row of ``x``."""
    return (x @ b.T / math.sqrt(x.shape[1]) + 3.0) ** deg


def shortest_path(
    num_data: int,
    num_features: int = 5,
    grid: tuple[int, int] = (5, 5),
    *,
    deg: int = 1,
    noise_width: float = 0.0,
    seed: int = 135,
) -> Synthetic:
    """Edge costs of a grid shortest path (PyEPO ``shortestpath.genData``).

    ``c = ((x B^T / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps`` with ``x ~ N(0, I_p)``,
    ``B ~ Bernoulli(0.5)^(d x p)``, ``eps ~ U[1 - noise_width, 1 + noise_width]`` per entry, and
    ``d = (h - 1) w + (w - 1) h`` edges of the ``h x w`` grid.

    Args:
        num_data: number of instances.
        num_features: feature dimension ``p``.
        grid: ``(h, w)`` nodes of the grid.
        deg: polynomial degree (model misspecification grows with it).
        noise_width: half-width of the multiplicative noise.
        seed: seed of the numpy ``Generator``; the same seed gives the same data.

    Returns:
        :class:`Synthetic` with features ``(num_data, p)`` and costs ``(num_data, d)`` (float64;
        positive when ``deg`` is even and ``noise_width < 1``).

    Example:
        >>> d = shortest_path(4, 5, (5, 5), deg=4, noise_width=0.5, seed=0)
        >>> d.features.shape, d.costs.shape
        ((4, 5), (4, 40))
    """
    _check("shortest_path", num_data, num_features, deg, noise_width)
    h, w = grid
    if not all(isinstance(v, (int, np.integer)) and v >= 2 for v in (h, w)):
        raise ValueError(f"shortest_path: grid={grid!r} must be two ints >= 2")
    d = (h - 1) * w + (w - 1) * h
    rng = np.random.default_rng(seed)
    b = rng.binomial(1, 0.5, (d, num_features)).astype(np.float64)
    x = rng.normal(0.0, 1.0, (num_data, num_features))
    eps = rng.uniform(1.0 - noise_width, 1.0 + noise_width, (num_data, d))
    mean = (_polynomial(x, b, deg) + 1.0) / 3.5**deg
    return Synthetic(x, mean * eps, mean)


def knapsack(
    num_data: int,
    num_features: int = 5,
    num_items: int = 32,
    *,
    dim: int = 2,
    deg: int = 1,
    noise_width: float = 0.0,
    capacity: float | tuple[float, float] = 0.5,
    seed: int = 135,
) -> KnapsackData:
    """Item values of a multi-dimensional knapsack (PyEPO ``knapsack.genData``).

    Weights ``W`` are drawn once, uniformly from ``{3.00, 3.01, ..., 7.99}`` (``dim x m``).
    Values ``c = ceil(5 ((x B^T / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps)`` with
    ``x ~ N(0, I_p)``, ``B ~ Bernoulli(0.5)^(m x p)``, ``eps ~ U[1 - noise_width, 1 + noise_width]``.
    Capacities are ``capacity * sum_i W[k, i]`` per dimension ``k``; with ``capacity=(lo, hi)``
    each instance draws its own fraction per dimension, uniformly in ``[lo, hi]`` (rounded down
    to a multiple of 0.01): per-instance data for ``layer(values, cap=data.capacities)``.

    Args:
        num_data: number of instances.
        num_features: feature dimension ``p``.
        num_items: number of items ``m``.
        dim: number of capacity constraints.
        deg: polynomial degree.
        noise_width: half-width of the multiplicative noise.
        capacity: each capacity as a fraction of that dimension's total weight, in ``(0, 1]``,
            or a range ``(lo, hi)`` of such fractions to draw one per instance.
        seed: seed of the numpy ``Generator``.

    Returns:
        :class:`KnapsackData` (values are integers stored as float64).

    Example:
        >>> data = knapsack(3, 5, 32, dim=2, deg=4, noise_width=0.5, seed=0)
        >>> data.weights.shape, data.capacities.shape, data.costs.shape
        ((2, 32), (2,), (3, 32))
        >>> knapsack(3, 5, 32, capacity=(0.2, 0.6), seed=0).capacities.shape
        (3, 2)
    """
    _check("knapsack", num_data, num_features, deg, noise_width)
    for name, value in (("num_items", num_items), ("dim", dim)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"knapsack: {name}={value!r} must be a positive int")
    fractions = capacity if isinstance(capacity, tuple) else (capacity,)
    if not (
        len(fractions) in (1, 2)
        and all(isinstance(f, (int, float)) and 0.0 < f <= 1.0 for f in fractions)
        and fractions[0] <= fractions[-1]
    ):
        raise ValueError(
            f"knapsack: capacity={capacity!r} must be a fraction in (0, 1] or a range (lo, hi) of such "
            "fractions with lo <= hi"
        )
    rng = np.random.default_rng(seed)
    weights = rng.integers(300, 800, (dim, num_items)) / 100.0
    b = rng.binomial(1, 0.5, (num_items, num_features)).astype(np.float64)
    x = rng.normal(0.0, 1.0, (num_data, num_features))
    eps = rng.uniform(1.0 - noise_width, 1.0 + noise_width, (num_data, num_items))
    mean = 5.0 * (_polynomial(x, b, deg) + 1.0) / 3.5**deg
    c = np.ceil(mean * eps)
    if isinstance(capacity, tuple):
        # drawn after everything else, so that the values and weights are those of a fixed capacity
        drawn = rng.uniform(capacity[0], capacity[1], (num_data, dim)) * weights.sum(axis=1)
        capacities = np.floor(drawn * 100.0) / 100.0
    else:
        capacities = capacity * weights.sum(axis=1)
    return KnapsackData(weights, capacities, x, c, expected_ceil(mean, noise_width))


def tsp(
    num_data: int,
    num_features: int = 5,
    num_nodes: int = 20,
    *,
    deg: int = 1,
    noise_width: float = 0.0,
    seed: int = 135,
) -> TSPData:
    """Symmetric edge costs of a TSP (PyEPO ``tsp.genData``).

    Cities: the first ``n // 2`` uniform in ``[-2, 2]^2``, the rest ``N(0, I_2)``. For each of the
    ``E = n (n - 1) / 2`` edges ``e = (i, j)``, ``i < j``:
    ``c_e = ||z_i - z_j|| + (x B^T / sqrt(p) + 3)^deg_e / 3^(deg - 1) * eps_e`` with
    ``B = Bernoulli(0.5) * U[-2, 2]`` (``E x p``), ``x ~ N(0, I_p)``,
    ``eps ~ U[1 - noise_width, 1 + noise_width]``, rounded to 4 decimals.

    Args:
        num_data: number of instances.
        num_features: feature dimension ``p``.
        num_nodes: number of cities ``n`` (>= 3).
        deg: polynomial degree.
        noise_width: half-width of the multiplicative noise.
        seed: seed of the numpy ``Generator``.

    Returns:
        :class:`TSPData`; ``costs`` is ``(num_data, n, n)``, symmetric with a zero diagonal.
        :func:`edge_vector` gives the ``E`` free entries in PyEPO's order.

    Example:
        >>> data = tsp(2, 5, 6, deg=2, noise_width=0.5, seed=0)
        >>> data.costs.shape, bool((data.costs == data.costs.transpose(0, 2, 1)).all())
        ((2, 6, 6), True)
    """
    _check("tsp", num_data, num_features, deg, noise_width)
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 3:
        raise ValueError(f"tsp: num_nodes={num_nodes!r} must be an int >= 3")
    n = num_nodes
    e = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    coords = np.concatenate((rng.uniform(-2.0, 2.0, (n // 2, 2)), rng.normal(0.0, 1.0, (n - n // 2, 2))))
    iu, ju = np.triu_indices(n, k=1)
    dist = np.linalg.norm(coords[iu] - coords[ju], axis=1)
    b = rng.binomial(1, 0.5, (e, num_features)) * rng.uniform(-2.0, 2.0, (e, num_features))
    x = rng.normal(0.0, 1.0, (num_data, num_features))
    eps = rng.uniform(1.0 - noise_width, 1.0 + noise_width, (num_data, e))
    feature_cost = _polynomial(x, b, deg) / 3.0 ** (deg - 1)
    edge = np.round(dist + feature_cost * eps, 4)
    return TSPData(coords, x, edge_matrix(edge, n), edge_matrix(dist + feature_cost, n))


def expected_ceil(mean: np.ndarray, noise_width: float) -> np.ndarray:
    """``E[ceil(m * eps)]`` for ``eps ~ U[1 - noise_width, 1 + noise_width]``, elementwise in ``m``.

    With ``G(t) = int_0^t ceil(u) du = k (k + 1) / 2 + (k + 1)(t - k)``, ``k = floor(t)`` (valid for
    every real ``t``), the expectation is ``(G(m (1 + w)) - G(m (1 - w))) / (2 m w)``.

    Example:
        >>> expected_ceil(np.array([1.0, 2.0]), 0.5).tolist()  # ceil(u) over u in [0.5, 1.5]: 1 or 2
        [1.5, 2.5]
    """
    mean = np.asarray(mean, dtype=np.float64)
    if noise_width == 0:
        return np.ceil(mean)

    def g(t: np.ndarray) -> np.ndarray:
        k = np.floor(t)
        return k * (k + 1) / 2 + (k + 1) * (t - k)

    lo, hi = mean * (1 - noise_width), mean * (1 + noise_width)
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (g(hi) - g(lo)) / span
    return np.where(span != 0, out, np.ceil(mean))


def edge_matrix(edges: np.ndarray, n: int) -> np.ndarray:
    """Symmetric ``(..., n, n)`` matrices (zero diagonal) from edge vectors ``(..., n(n-1)/2)``
    in row-major upper-triangle order (``(0,1), (0,2), ..., (n-2, n-1)``).

    Example:
        >>> edge_matrix(np.array([1.0, 2.0, 3.0]), 3).tolist()
        [[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.shape[-1] != n * (n - 1) // 2:
        raise ValueError(f"edge_matrix: last axis {edges.shape[-1]} != n(n-1)/2 = {n * (n - 1) // 2}")
    iu, ju = np.triu_indices(n, k=1)
    out = np.zeros((*edges.shape[:-1], n, n))
    out[..., iu, ju] = edges
    out[..., ju, iu] = edges
    return out


def edge_vector(matrices: np.ndarray) -> np.ndarray:
    """The upper-triangle entries ``(..., n(n-1)/2)`` of ``(..., n, n)`` matrices (inverse of
    :func:`edge_matrix` for symmetric input).

    Example:
        >>> edge_vector(edge_matrix(np.array([1.0, 2.0, 3.0]), 3)).tolist()
        [1.0, 2.0, 3.0]
    """
    matrices = np.asarray(matrices)
    n = matrices.shape[-1]
    iu, ju = np.triu_indices(n, k=1)
    return matrices[..., iu, ju]


@dataclass(frozen=True)
class OptDataset(torch.utils.data.Dataset):
    """Features, true costs, optimal decisions and optimal objectives, as tensors, and the
    per-instance data the layer was solved with (``data``: name -> ``(N, ...)``; empty for a
    layer without data).

    ``dataset[i]`` is ``(features[i], costs[i], solutions[i], objectives[i])``, so a
    ``torch.utils.data.DataLoader`` over it yields batches of the four; with data, a fifth
    item, the dict of the instances' data (which the loader batches per name too).
    """

    features: torch.Tensor
    costs: torch.Tensor
    solutions: torch.Tensor
    objectives: torch.Tensor
    data: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int | slice | torch.Tensor) -> tuple[Any, ...]:
        items = (self.features[i], self.costs[i], self.solutions[i], self.objectives[i])
        return (*items, self.data_of(i)) if self.data else items

    def data_of(self, index: int | slice | np.ndarray | torch.Tensor, *, ids: bool = False) -> dict[str, torch.Tensor]:
        """The data of the instances at ``index``, to pass on as ``layer(costs, **data)``; with
        ``ids=True`` also their indices as ``ids`` (the instance ids of warm starts)."""
        out = {name: values[index] for name, values in self.data.items()}
        if ids:
            out["ids"] = torch.arange(len(self.features))[index]
        return out

    def subset(self, index: slice | np.ndarray | torch.Tensor) -> OptDataset:
        """The instances at ``index`` (e.g. ``slice(0, 1000)``) as a new data set."""
        return OptDataset(
            self.features[index], self.costs[index], self.solutions[index], self.objectives[index], self.data_of(index)
        )


def solve_dataset(
    layer: OptLayer,
    features: np.ndarray | torch.Tensor,
    costs: np.ndarray | torch.Tensor,
    *,
    chunk: int = 200,
    progress: bool = True,
    desc: str = "solving true costs",
    dtype: torch.dtype = torch.float32,
    data: Mapping[str, Any] | None = None,
) -> OptDataset:
    """Solve every true cost once through ``layer`` (its pool when it has ``workers=``).

    Args:
        layer: the layer whose model is solved (its ``solve``: exact, no projection or noise).
        features: ``(N, p)`` features.
        costs: ``(N, *layer.shape)`` true costs.
        chunk: instances per ``layer.solve`` call (the progress bar moves per chunk).
        progress: show a tqdm progress bar.
        desc: the progress bar's label.
        dtype: floating dtype of the returned features, costs and solutions.
        data: per-instance data of the layer (name -> ``(N, ...)``), stored with the data set
            and passed on by :func:`idproj_or.training.fit` and the metrics.

    Returns:
        :class:`OptDataset`; ``objectives[i] = sum(costs[i] * solutions[i])`` in float64, of the
        costs as stored (in ``dtype``).

    Example:
        >>> import idproj_or as ipo
        >>> costs = np.array([[[3.0, 1.0], [2.0, 5.0]], [[1.0, 2.0], [2.0, 1.0]]])
        >>> ds = solve_dataset(ipo.AssignmentLayer(2), np.zeros((2, 1)), costs, progress=False)
        >>> ds.solutions.tolist(), ds.objectives.tolist()
        ([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]], [3.0, 2.0])
    """
    feats, given = _check_solve_inputs(layer, features, costs, chunk, data, "solve_dataset")
    # Solve the costs as they will be stored, so that decisions, objectives and costs agree.
    true = torch.as_tensor(np.asarray(costs)).to(dtype).to(torch.float64)
    sols = _solve_chunks(layer, true, given, chunk, progress, desc)
    objectives = (true * sols).reshape(len(true), -1).sum(dim=1)
    return OptDataset(feats.to(dtype), true.to(dtype), sols.to(dtype), objectives, given)


def _solve_chunks(
    layer: OptLayer, costs: torch.Tensor, data: Mapping[str, Any], chunk: int, progress: bool, desc: str
) -> torch.Tensor:
    """``layer.solve`` over ``chunk`` rows of ``costs`` (and of each ``data`` entry) at a time."""
    parts = []
    with tqdm(total=len(costs), desc=desc, disable=not progress, leave=False) as bar:
        for start in range(0, len(costs), chunk):
            rows: dict[str, Any] = {name: values[start : start + chunk] for name, values in data.items()}
            parts.append(layer.solve(costs[start : start + chunk], **rows))
            bar.update(len(parts[-1]))
    return torch.cat(parts)


def _check_solve_inputs(
    layer: OptLayer,
    features: np.ndarray | torch.Tensor,
    costs: np.ndarray | torch.Tensor,
    chunk: int,
    data: Mapping[str, Any] | None,
    where: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(N, p)`` float64 features and the per-instance data as tensors, checked against the
    ``(N, *layer.shape)`` costs."""
    feats = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if feats.ndim != 2:
        raise ValueError(f"{where}: features must be (N, p), got shape {tuple(feats.shape)}")
    shape = tuple(np.shape(costs))
    if shape[1:] != layer.shape or shape[0] != len(feats):
        raise ValueError(
            f"{where}: costs must be ({len(feats)}, {', '.join(map(str, layer.shape))}) to match "
            f"{len(feats)} features and the layer's cost shape, got {shape}"
        )
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{where}: chunk={chunk!r} must be a positive int")
    given = {name: torch.as_tensor(np.asarray(values)) for name, values in (data or {}).items()}
    for name, values in given.items():
        if values.ndim == 0 or len(values) != len(feats):
            raise ValueError(
                f"{where}: data {name!r} must have one row per instance ({len(feats)}), got shape {tuple(values.shape)}"
            )
    return feats, given


def knn_costs(
    features: np.ndarray | torch.Tensor,
    costs: np.ndarray | torch.Tensor,
    *,
    k: int = 10,
    weight: float = 0.5,
) -> np.ndarray:
    """The kNN-robust costs of Schutte et al. (IJCAI 2024), as PyEPO's ``optDatasetKNN`` forms them.

    For instance ``i`` with neighbours ``j_1..j_k`` (the ``k`` nearest in Euclidean distance
    between features, itself excluded), the ``k`` combined costs
    ``weight * c_i + (1 - weight) * c_{j_l}``. The neighbours are PyEPO's exactly:
    ``np.argpartition`` of ``scipy.spatial.distance.cdist`` distances with the diagonal set to
    ``inf``; between neighbours at equal distances ``argpartition`` picks one (so does PyEPO,
    with the same numpy), and in that order.

    Args:
        features: ``(N, p)`` features.
        costs: ``(N, *cost_shape)`` costs.
        k: neighbours per instance, ``1 <= k < N``.
        weight: the instance's own weight in each combination, in ``[0, 1]`` (1: no smoothing).

    Returns:
        ``(N, k, *cost_shape)`` float64 combined costs, the ``l``-th with the ``l``-th neighbour.

    Example:
        >>> knn_costs(np.array([[0.0], [1.0], [3.0]]), np.array([[0.0, 2.0], [2.0, 0.0], [4.0, 4.0]]), k=1).tolist()
        [[[1.0, 1.0]], [[1.0, 1.0]], [[3.0, 2.0]]]
    """
    return _knn_costs(features, costs, k, weight, "knn_costs")


def _knn_costs(
    features: np.ndarray | torch.Tensor, costs: np.ndarray | torch.Tensor, k: int, weight: float, where: str
) -> np.ndarray:
    feats = torch.as_tensor(features).detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
    true = torch.as_tensor(costs).detach().cpu().numpy() if isinstance(costs, torch.Tensor) else costs
    feats = np.asarray(feats, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{where}: features must be (N, p), got shape {feats.shape}")
    if true.ndim < 2 or len(true) != len(feats):
        raise ValueError(f"{where}: costs must be ({len(feats)}, ...) to match {len(feats)} features, got {true.shape}")
    # PyEPO's conditions: validate_positive_int(k), k < num_data, validate_probability(weight)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{where}: k={k!r} must be a positive int")
    if k >= len(feats):
        raise ValueError(
            f"{where}: k={k} must be below the number of instances ({len(feats)}): each has at most "
            f"{len(feats) - 1} neighbours (itself excluded)"
        )
    if not (isinstance(weight, Real) and not isinstance(weight, bool) and 0.0 <= float(weight) <= 1.0):
        raise ValueError(f"{where}: weight={weight!r} must be a number in [0, 1]")
    flat = true.reshape(len(true), -1)
    distances = distance.cdist(feats, feats, "euclidean")
    np.fill_diagonal(distances, np.inf)  # itself excluded
    index = np.argpartition(distances, k, axis=1)[:, :k]
    # PyEPO's expression, (N, d, k), so that the sums agree to the last bit
    combined = weight * flat[:, :, np.newaxis] + (1 - weight) * np.transpose(flat[index], (0, 2, 1))
    return np.moveaxis(combined, 2, 1).reshape(len(true), k, *true.shape[1:])


def solve_knn_dataset(
    layer: OptLayer,
    features: np.ndarray | torch.Tensor,
    costs: np.ndarray | torch.Tensor,
    *,
    k: int = 10,
    weight: float = 0.5,
    chunk: int = 200,
    progress: bool = True,
    desc: str = "solving kNN costs",
    dtype: torch.dtype = torch.float32,
    data: Mapping[str, Any] | None = None,
) -> OptDataset:
    """kNN-robust targets (Schutte et al., IJCAI 2024; PyEPO's ``optDatasetKNN``): every instance's
    ``k`` combined costs (:func:`knn_costs`) solved through ``layer``, and their means.

    With ``c_{i,l} = weight * c_i + (1 - weight) * c_{j_l}`` over the ``k`` nearest neighbours
    ``j_l`` of instance ``i`` in feature space and ``y_{i,l} = y(c_{i,l})``, the data set holds
    ``costs[i] = mean_l c_{i,l}``, ``solutions[i] = mean_l y_{i,l}`` (a fractional target) and
    ``objectives[i] = mean_l <c_{i,l}, y_{i,l}>`` (float64; not ``<costs[i], solutions[i]>``
    in general). The ``N k`` solves go through ``layer.solve`` in batches of ``chunk`` (the
    layer's pool when it has ``workers=``); the combined costs are solved in float64, and
    instance ``i``'s data goes with each of its ``k`` combinations.

    Args:
        layer: the layer whose model is solved (its ``solve``: exact, no projection or noise).
        features: ``(N, p)`` features (the neighbours are the nearest in these).
        costs: ``(N, *layer.shape)`` true costs.
        k: neighbours per instance, ``1 <= k < N``.
        weight: the instance's own weight in each combination, in ``[0, 1]`` (1: no smoothing,
            the targets of :func:`solve_dataset` up to ties).
        chunk: combined costs per ``layer.solve`` call.
        progress: show a tqdm progress bar.
        desc: the progress bar's label.
        dtype: floating dtype of the returned features, costs and solutions.
        data: per-instance data of the layer (name -> ``(N, ...)``), as for :func:`solve_dataset`.

    Returns:
        :class:`OptDataset` of the mean costs, solutions and objectives.

    Example:
        >>> import idproj_or as ipo
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(2)]
        >>> _ = m.add(sum(x) == 1)
        >>> layer = ipo.CpSatLayer(m, x, sense="min")
        >>> feats, costs = np.array([[0.0], [1.0], [3.0]]), np.array([[0.0, 2.0], [3.0, 0.0], [4.0, 3.0]])
        >>> ds = solve_knn_dataset(layer, feats, costs, k=2, progress=False)
        >>> ds.solutions.tolist(), ds.objectives.tolist()
        ([[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]], [1.5, 1.25, 1.75])
    """
    feats, given = _check_solve_inputs(layer, features, costs, chunk, data, "solve_knn_dataset")
    combined = _knn_costs(features, costs, k, weight, "solve_knn_dataset")
    n = len(combined)
    flat = torch.from_numpy(np.ascontiguousarray(combined)).reshape(n * k, *layer.shape)
    rows = {name: values.repeat_interleave(k, dim=0) for name, values in given.items()}
    sols = _solve_chunks(layer, flat, rows, chunk, progress, desc).to(torch.float64).reshape(n, k, -1)
    objectives = (flat.reshape(n, k, -1) * sols).sum(dim=2).mean(dim=1)
    mean_costs = torch.from_numpy(np.moveaxis(combined.reshape(n, k, -1), 1, 2).mean(axis=2))
    return OptDataset(
        feats.to(dtype),
        mean_costs.reshape(n, *layer.shape).to(dtype),
        sols.mean(dim=1).reshape(n, *layer.shape).to(dtype),
        objectives,
        given,
    )
