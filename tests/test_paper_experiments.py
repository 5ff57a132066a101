"""The paper experiments (examples/paper/) run end to end on their tiny settings, and the report
turns their summaries into the claims table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import idproj_or as ipo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "paper"))

import dvae  # noqa: E402
import globe_tsp  # noqa: E402
import graph_matching  # noqa: E402
import l2x  # noqa: E402
import ranking  # noqa: E402
import report  # noqa: E402
import warcraft  # noqa: E402


@pytest.fixture(scope="module")
def tiny(paper_tiny):
    folder, run = paper_tiny
    return folder, {module.NAME: run(module) for module in (globe_tsp, graph_matching, l2x, ranking)}


def _check_runs(summary, methods):
    assert summary["tiny"] and summary["seeds"] == [1, 2]
    assert {v["method"] for v in summary["settings"].values()} == methods
    for v in summary["settings"].values():
        assert 0.0 <= v["accuracy"]["mean"] <= 1.0 and len(v["accuracy"]["values"]) == 2
        assert v["seconds_per_epoch"]["mean"] > 0


def test_globe_tsp_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["globe_tsp"]
    _check_runs(summary, {"identity", "blackbox"})
    calls = {v["method"]: v["solve_batches_per_step"]["mean"] for v in summary["settings"].values()}
    assert calls == {"identity": 1.0, "blackbox": 2.0}  # Blackbox solves again in backward
    assert any(v.get("corrupt") for v in summary["settings"].values())
    assert any(v.get("grad_noise") for v in summary["settings"].values())
    scaled = globe_tsp._scaled(summary)
    assert set(scaled) == set(globe_tsp.SCALED_RUNS) and {v["n_train"] for v in scaled.values()} == {80}
    assert set(summary["sensitivity"]) == {str(v["k"]) for v in summary["settings"].values()}
    # every hypothesis for the gap has a row against its base (with 1x and with more data)
    rows = globe_tsp._hypotheses(summary)
    bases = {base for _, base in rows}
    assert bases == {"k5-identity-a0.5", "k5-identity-a0.5-n80", "k5-identity-a0.0-n80"}
    assert {key for key, base in rows if base == "k5-identity-a0.5"} >= {
        f"k5-identity-a0.5{tail}" for tail in globe_tsp.HYPOTHESES
    }
    assert {v.get("schedule") for v in summary["settings"].values()} >= {"cosine", "quarter"}
    assert {v.get("noise_until") for v in summary["settings"].values()} >= {0.25, 1.0}
    assert "Hypotheses for the gap" in globe_tsp.details(summary)
    assert (folder / "globe_tsp.json").exists() and (folder / "globe_tsp.png").exists()


def test_globe_tsp_learning_rate():
    lr = globe_tsp.learning_rate
    assert [lr("half", 1.0, e, 40) for e in (1, 20, 21, 40)] == [1.0, 1.0, 0.1, 0.1]
    assert [lr("quarter", 1.0, e, 40) for e in (1, 30, 31, 40)] == [1.0, 1.0, 0.1, 0.1]
    assert lr("cosine", 1.0, 1, 40) == 1.0 and 0 < lr("cosine", 1.0, 40, 40) < 0.01


def test_globe_tsp_exact_tours_need_precise_positions():
    small, large = str(globe_tsp.JITTERS[0]), str(globe_tsp.JITTERS[-1])
    s5, s10 = globe_tsp.sensitivity(5, 200), globe_tsp.sensitivity(10, 200)
    assert s5[small] > 0.95 and s5[large] < s5[small]
    assert s10[large] < s5[large] and s10[large] < 0.8  # more cities, more near-ties


def _acc(mean, std=0.0):
    return {"accuracy": {"mean": mean, "std": std}}


@pytest.mark.parametrize(
    ("clean", "levels", "verdict"),
    [
        # ahead under both kinds, collapsed levels are ignored
        ((0.77, 0.78), [("labels", 0.36, 0.18), ("labels", 0.0, 0.01), ("gradients", 0.7, 0.0)], "reproduced"),
        # one kind without a win
        ((0.77, 0.78), [("labels", 0.36, 0.18), ("gradients", 0.01, 0.0)], "partly"),
        # a level within the spread that did not collapse is unclear
        ((0.77, 0.78), [("labels", 0.36, 0.18), ("gradients", 0.4, 0.0, 0.45)], "partly"),
        # not equal when clean
        ((0.60, 0.78), [("labels", 0.36, 0.18), ("gradients", 0.7, 0.0)], "partly"),
        # Blackbox ahead wherever there is a difference
        ((0.77, 0.78), [("labels", 0.1, 0.3), ("gradients", 0.0, 0.5)], "not"),
    ],
)
def test_globe_tsp_robustness_verdict(clean, levels, verdict):
    gaps = [(kind, f"{kind}{n}", _acc(i, *spread), _acc(b, *spread)) for n, (kind, i, b, *spread) in enumerate(levels)]
    assert globe_tsp.robustness_verdict(_acc(clean[0]), _acc(clean[1]), gaps) == verdict


def test_graph_matching_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["graph_matching"]
    _check_runs(summary, {"identity", "blackbox", "blackbox-small"})
    assert {v["projection"] for v in summary["settings"].values()} == {"none", "norm"}
    assert (folder / "graph_matching.png").exists()


def test_l2x_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["l2x"]
    assert summary["tiny"] and summary["seeds"] == [1, 2]
    assert {v["method"] for v in summary["settings"].values()} == set(l2x.METHODS)
    for v in summary["settings"].values():
        assert 0.0 <= v["precision"]["mean"] <= 1.0 and len(v["mse"]["values"]) == 2
        assert 0.0 < v["mse"]["mean"] < 0.25  # ratings lie in (0, 1)
    assert (folder / "l2x.png").exists()


def test_l2x_rating_depends_on_the_aroma_tokens_only():
    _, aroma, other_polarity = l2x.vocabulary()
    tokens, rating, relevant = l2x.reviews(50, 7)
    assert tokens.shape == (50, l2x.LENGTH) and (relevant.sum(dim=1) == l2x.RELEVANT).all()
    for row in range(50):
        picked = tokens[row][relevant[row].bool()]
        assert torch.allclose(rating[row], torch.sigmoid(2 * aroma[picked].mean()))
    # the correlated aspect is present, and its sentiment follows the rating (a tempting decoy)
    other = (tokens >= l2x.ASPECT_TOKENS) & (tokens < 2 * l2x.ASPECT_TOKENS)
    assert (other.sum(dim=1) == l2x.OTHER_ASPECT).all()
    polarity = other_polarity[(tokens - l2x.ASPECT_TOKENS).clamp(0, l2x.ASPECT_TOKENS - 1)]
    decoy = (polarity * other).sum(dim=1) / l2x.OTHER_ASPECT
    assert torch.corrcoef(torch.stack([decoy, rating]))[0, 1] > 0.5


def test_l2x_identity_sampler_adds_noise_only_in_training():
    sample = l2x.sampler("identity-std", 5, seed=0)
    scores = torch.linspace(0, 1, l2x.LENGTH).repeat(200, 1)
    sample.eval()
    assert (sample(scores) == torch.zeros_like(scores).index_fill_(1, torch.arange(35, 40), 1.0)).all()
    sample.train()
    noisy = sample(scores)
    assert (noisy.sum(dim=1) == 5).all() and not (noisy == noisy[0]).all()


def test_ranking_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["ranking"]
    assert summary["tiny"] and summary["seeds"] == [1, 2]
    assert set(summary["settings"]) == {ranking.key(p, m, a, q) for p, a, q in ranking.rows() for m in ranking.METHODS}
    for v in summary["settings"].values():
        assert 0.0 <= v["recall"]["mean"] <= 1.0 and len(v["recall"]["values"]) == 2
        assert v["solve_batches_per_step"]["mean"] == (1.0 if v["method"] == "identity" else 2.0)
    assert (folder / "ranking.png").exists()


def test_ranking_split_holds_disjoint_classes():
    d = ranking.dataset(3, 2, seed=0)
    assert set(d["y_train"].tolist()) == set(range(50)) and set(d["y_test"].tolist()) == set(range(50, 100))
    assert d["x_train"].shape == (150, 32) and d["x_test"].shape == (100, 32)


def test_ranking_recall_at_1_by_hand():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 1.0]]), dim=1)
    assert ranking.recall_at_1(e, torch.tensor([0, 0, 1, 1])) == 1.0
    assert ranking.recall_at_1(e, torch.tensor([0, 1, 0, 1])) == 0.0


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(ranking.PER_CLASS)
    return torch.randn(len(labels), 5, generator=g, requires_grad=True), labels


def test_ranking_loss_is_zero_when_positives_rank_first():
    labels = torch.arange(4).repeat_interleave(ranking.PER_CLASS)
    e = torch.nn.functional.one_hot(labels, 4).float()  # positives: similarity 1, negatives 0
    b = len(labels)
    loss, negative = ranking.recall_loss(e, labels, ipo.RankingLayer(b - 1), ipo.RankingLayer(ranking.PER_CLASS - 1))
    assert float(loss) == 0.0 and negative == 0


def _eq26_by_hand(e, labels, reverse_positives=False):
    """Eq. 26 summed over the queries, with ranks from argsort (1 = highest score), and the
    count of negative gaps."""
    total, negative = 0.0, 0
    for q in range(len(e)):
        others = [j for j in range(len(e)) if j != q]
        s = torch.stack([e[q] @ e[j] for j in others])
        rank = torch.empty(len(s))
        rank[s.argsort(descending=True)] = torch.arange(1.0, len(s) + 1)
        pos = [i for i, j in enumerate(others) if labels[j] == labels[q]]
        r_pos = rank[pos]
        r_plus = torch.empty(len(pos))
        r_plus[s[pos].argsort(descending=not reverse_positives)] = torch.arange(1.0, len(pos) + 1)
        gap = r_pos - r_plus
        negative += int((gap < 0).sum())
        total += float(torch.log1p(torch.log1p(gap.clamp(min=0))).mean())
    return total, negative


def test_ranking_loss_is_eq26_with_both_ways_of_computing_the_positives_ranks():
    x, labels = _batch(5)
    e = torch.nn.functional.normalize(x.detach(), dim=1)
    b = len(labels)
    expected, _ = _eq26_by_hand(e, labels)
    assert expected > 0
    ranker, _ = ranking.recall_loss(e, labels, ipo.RankingLayer(b - 1), ipo.RankingLayer(ranking.PER_CLASS - 1))
    constant, _ = ranking.recall_loss(e, labels, ipo.RankingLayer(b - 1), None)
    assert float(ranker) == pytest.approx(expected, rel=1e-6) and float(constant) == pytest.approx(expected, rel=1e-6)
    # positives ranked the wrong way round among themselves: the negative gaps are counted
    reverse = ipo.RankingLayer(ranking.PER_CLASS - 1, sense="max")
    loss, negative = ranking.recall_loss(e, labels, ipo.RankingLayer(b - 1), reverse)
    expected, count = _eq26_by_hand(e, labels, reverse_positives=True)
    assert count > 0 and negative == count and float(loss) == pytest.approx(expected, rel=1e-6)


def test_ranking_identity_without_projection_has_exactly_zero_gradient():
    # rk(s)_i - rk(s+)_i: under -I the positive's two gradients cancel, the documented finding
    b = 4 * ranking.PER_CLASS
    for projection, zero in (("none", True), ("std", False)):
        x, labels = _batch(3)
        rank_all = ipo.RankingLayer(b - 1, projection=projection)
        rank_pos = ipo.RankingLayer(ranking.PER_CLASS - 1, projection=projection)
        loss, _ = ranking.recall_loss(torch.nn.functional.normalize(x, dim=1), labels, rank_all, rank_pos)
        assert float(loss.detach()) > 0
        loss.backward()
        assert (x.grad.abs().max() == 0) == zero


def _ranking_summary(identity, blackbox):
    """A summary with R@1 ``identity[p]`` / ``blackbox[p]`` (mean, std) for every row of projection p."""
    settings = {}
    for p, a, q in ranking.rows():
        for method, table in (("identity", identity), ("blackbox", blackbox)):
            mean, std = table[p]
            settings[ranking.key(p, method, a, q)] = {"recall": {"mean": mean, "std": std}}
    return {"settings": settings}


@pytest.mark.parametrize(
    ("identity", "blackbox", "verdicts"),
    [
        (  # the paper's pattern
            {"none": (0.14, 0.01), "mean": (0.45, 0.01), "norm": (0.59, 0.01), "std": (0.60, 0.01)},
            {"none": (0.63, 0.01), "mean": (0.63, 0.01), "norm": (0.61, 0.01), "std": (0.63, 0.01)},
            ["reproduced", "reproduced"],
        ),
        (  # projections out of order; Blackbox behind under P_norm
            {"none": (0.05, 0.01), "mean": (0.60, 0.01), "norm": (0.64, 0.01), "std": (0.30, 0.01)},
            {"none": (0.50, 0.01), "mean": (0.68, 0.01), "norm": (0.37, 0.01), "std": (0.40, 0.01)},
            ["partly", "partly"],
        ),
        (  # no projection helps; Blackbox behind everywhere
            {"none": (0.10, 0.05), "mean": (0.12, 0.05), "norm": (0.11, 0.05), "std": (0.10, 0.05)},
            {"none": (0.05, 0.01), "mean": (0.05, 0.01), "norm": (0.05, 0.01), "std": (0.05, 0.01)},
            ["not", "not"],
        ),
    ],
)
def test_ranking_claim_verdicts(identity, blackbox, verdicts):
    assert [row["verdict"] for row in ranking.claims(_ranking_summary(identity, blackbox))] == verdicts


def test_report_writes_the_claims_table(tiny, paper_tiny, tmp_path):
    folder, run = paper_tiny
    pytest.importorskip("mlxtend")
    run(dvae)
    run(warcraft, seeds=(1,))
    doc = tmp_path / "paper.md"
    markers = ["paper_claims", *(f"paper_{name}" for name in report.EXPERIMENTS)]
    doc.write_text("".join(f"<!-- {m}: begin -->\nold\n<!-- {m}: end -->\n" for m in markers))
    report.write(doc, folder)
    text = doc.read_text()
    assert "old" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == 19  # three claims per experiment, two for ranking and Warcraft, six for the DVAE
    assert all(any(f"**{v}**" in row for v in ("reproduced", "partly", "not")) for row in rows)
