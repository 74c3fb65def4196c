"""Crystals: the tensor representation round-trips, and the mixed likelihood checks its
input. The round trip over every shared structure is `slow`; a fixed subset runs always."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from betavae_core.errors import DataError
from betavae_crystals import CrystalRepresentation, from_structures
from betavae_crystals.likelihoods import CrystalLikelihood
from betavae_crystals.representation import (
    canonical_cell,
    lattice_features,
    lattice_matrices,
    protocol_matcher,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crystals"


def shipped_structures() -> list[Structure]:
    """Structures from ase's and pymatgen's own constructors (no files)."""
    atoms = [bulk("Cu", "fcc", a=3.6), bulk("Si", "diamond", a=5.43),
             bulk("NaCl", "rocksalt", a=5.64), bulk("Mg", "hcp", a=3.2, c=5.2),
             bulk("Fe", "bcc", a=2.87, cubic=True)]
    out = [AseAtomsAdaptor.get_structure(a) for a in atoms]
    out.append(Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]))
    out.append(Structure(Lattice.from_parameters(3.1, 4.7, 5.3, 81, 97, 112),
                         ["Zn", "O", "O"], [[0.1, 0.2, 0.3], [0.6, 0.25, 0.7], [0.3, 0.8, 0.1]]))
    return out


def assert_round_trip(structures: list[Structure]) -> None:
    cells = [canonical_cell(s) for s in structures]
    rep = CrystalRepresentation.fit(cells)
    back = rep.decode(rep.encode(cells))
    matcher = protocol_matcher()
    failed = [i for i, (a, b) in enumerate(zip(structures, back, strict=True))
              if not matcher.fit(a, b)]
    assert not failed, f"{len(failed)} of {len(structures)} do not match, e.g. {failed[:5]}"


def test_lattice_features_invert_and_any_six_numbers_make_a_cell():
    m = Lattice.from_parameters(3.1, 4.7, 5.3, 81, 97, 112).matrix
    back = lattice_matrices(lattice_features(m)[None])[0]
    np.testing.assert_allclose(back @ back.T, m @ m.T, atol=1e-9)  # same metric
    random = lattice_matrices(np.random.default_rng(0).normal(size=(100, 6)))
    assert (np.linalg.det(random) > 0).all()


def test_round_trip_on_shipped_structures_and_translation_invariance():
    structures = shipped_structures()
    assert_round_trip(structures)
    rep = CrystalRepresentation.fit([canonical_cell(s) for s in structures])
    shifted = structures[-1].copy()
    shifted.translate_sites(range(len(shifted)), [0.37, 0.11, 0.52])
    np.testing.assert_allclose(rep.encode_one(shifted), rep.encode_one(structures[-1]),
                               atol=1e-6)


def _shared(name: str, every: int) -> list[Structure]:
    import pandas as pd

    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared data not present ({path})")
    table = pd.read_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(c, fmt="cif") for c in table.cif[::every]]


@pytest.mark.parametrize("name", ["perov_5_val.csv", "carbon_24_val.csv"])
def test_round_trip_on_shared_data_subset(name):
    assert_round_trip(_shared(name, every=25))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["perov_5_val.csv", "carbon_24_val.csv"])
def test_round_trip_on_every_shared_structure(name):
    assert_round_trip(_shared(name, every=1))


def test_encoding_outside_the_vocabulary_or_size_names_the_structure():
    data = from_structures(shipped_structures()[:3], names=["cu", "si", "nacl"])
    rep = CrystalRepresentation.from_attrs(data.attrs)
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(DataError, match=r"cscl: CsCl holds element\(s\) Cs outside the training"):
        rep.encode_one(cscl, "cscl")
    big = Structure(Lattice.cubic(9.0), ["Cu"] * 6, np.random.default_rng(1).random((6, 3)))
    with pytest.raises(DataError, match=r"big: 6 sites in its primitive cell \(Cu\); the "
                       r"maximum is 2"):
        rep.encode_one(big, "big")
    with pytest.raises(DataError, match=r"structure 0: CsCl holds .*outside the training"):
        from_structures([cscl], like=data.attrs)


def test_likelihood_scores_items_and_refuses_another_vocabulary():
    data = from_structures(shipped_structures())
    lik = CrystalLikelihood(data.event_shape)
    lik.check_data(data.x)
    params = torch.zeros(len(data), 2, *data.event_shape)
    dist = lik.distribution(params, data.context)
    assert dist.log_prob(data.x).shape == (len(data),)
    assert dist.mode().shape == data.x.shape and dist.sample().shape == data.x.shape
    assert torch.isfinite(dist.log_prob(data.x)).all()
    other = data.x.clone()
    other[:, 0, 4] = 0.99  # another atomic number in the vocabulary row
    with pytest.raises(DataError, match="another species vocabulary"):
        lik.check_data(other)
    broken = data.x.clone()
    broken[1, 3, 3:] = 0.5
    with pytest.raises(DataError, match="item 1, site slot 1: species must be one-hot"):
        CrystalLikelihood(data.event_shape).check_data(broken)
