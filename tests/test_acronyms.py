"""PyEPO's names for the rules (idproj_or.acronyms): every rule module of pyepo.func has its
acronym here, each naming the idproj_or rule with PyEPO's mathematics."""

from __future__ import annotations

import pytest

import idproj_or as ipo
from idproj_or import acronyms

SAME_CLASS = {
    "SPOPlus": "SPOPlus",
    "PG": "PerturbationGradient",
    "DBB": "Blackbox",
    "DPO": "PerturbedOpt",
    "PFY": "FenchelYoung",
    "IMLE": "IMLE",
    "AIMLE": "AdaptiveIMLE",
    "RFWO": "RegularizedFrankWolfe",
    "RFY": "RegularizedFenchelYoung",
    "NCE": "NoiseContrastive",
    "CMAP": "ContrastiveMAP",
    "ptLTR": "PointwiseLTR",
    "prLTR": "PairwiseLTR",
    "lsLTR": "ListwiseLTR",
    "CaVE": "ConeAligned",
}


@pytest.mark.parametrize(("acronym", "name"), SAME_CLASS.items())
def test_acronym_is_the_rule(acronym, name):
    assert getattr(acronyms, acronym) is getattr(ipo, name)


def test_every_pyepo_rule_has_its_acronym():
    func = pytest.importorskip("pyepo.func")
    # PyEPO exports each rule under a long name and an acronym, both bound to one object.
    short = {}
    for name in func.__all__:
        short.setdefault(id(getattr(func, name)), []).append(name)
    missing = [names for names in short.values() if not any(n in acronyms.__all__ for n in names)]
    assert missing == []
    assert set(acronyms.__all__) <= set(func.__all__)


def test_fixed_options():
    layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
    nid = acronyms.NID(layer)
    assert isinstance(nid, ipo.ProjectedIdentity) and nid.projection == "none"
    assert acronyms.NID(layer, projection="auto").projection == "auto"
    assert acronyms.DPOMul(layer, n_samples=3).multiplicative
    assert acronyms.PFYMul(layer, n_samples=3).multiplicative
    assert not acronyms.DPO(layer, n_samples=3).multiplicative


def test_fixed_option_cannot_be_contradicted():
    layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
    with pytest.raises(TypeError, match="multiplicative"):
        acronyms.DPOMul(layer, multiplicative=False)
