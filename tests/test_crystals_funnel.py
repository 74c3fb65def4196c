"""Crystals: each stage of the candidate funnel on its own — structural and
compositional validity, deduplication, novelty, relaxation (incl. one that does not
converge) and latent steering toward a target property."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from betavae_crystals import matching, validity
from betavae_crystals.relax import Potential, relax_all, relax_structure


def rocksalt(a: float = 5.64) -> Structure:
    return AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=a))


def test_structural_validity_distances_and_volume():
    assert validity.structure_validity(rocksalt()) == (True, "")
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    ok, why = validity.structure_validity(close)
    assert not ok and "0.2 Å apart" in why
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 0.001]]), ["Na"], [[0, 0, 0]])
    ok, why = validity.structure_validity(flat)
    assert not ok and "volume" in why
    assert validity.structure_validity(None) == (False, "no atoms")


@pytest.mark.parametrize("formula, valid, reason", [
    ("NaCl", True, ""), ("SrTiO3", True, ""), ("C", True, ""), ("CuAu", True, "alloy"),
    ("NaCl2", False, "no charge-neutral"), ("NaHe", False, "no oxidation states known for He"),
    ("NaOg", False, "no oxidation states known for Og"),
])
def test_compositional_validity_never_crashes(formula, valid, reason):
    ok, why = validity.composition_validity(Composition(formula))
    assert ok is valid and reason in why


def test_duplicates_found_across_translation_and_supercell_within_formula():
    a = rocksalt()
    shifted = a.copy()
    shifted.translate_sites(range(len(a)), [0.1, 0.2, 0.3])
    supercell = a * (2, 1, 1)
    other = rocksalt(6.4)  # same formula, different volume: matches after scaling
    kcl = Structure(Lattice.cubic(4.0), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = [a, shifted, kcl, supercell, other]
    first = matching.deduplicate(structures, range(len(structures)))
    assert first == {0: 0, 1: 0, 2: 2, 3: 0, 4: 0}
    training = matching.TrainingSet.build([kcl], ["mp-kcl"])
    assert training.match(Structure(Lattice.cubic(4.2), ["K", "Cl"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5]])) == "mp-kcl"
    assert training.match(a) is None and training.same_formula(a) == 0


def test_emt_relaxation_converges_skips_and_flags_non_convergence():
    strained = AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.75))
    srtio3 = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    done, skipped = relax_all([strained, srtio3], "emt", fmax=0.05, steps=300)
    assert done.converged and done.energy_per_atom < 0.1
    assert done.structure.lattice.a < strained.lattice.a  # the cell shrank toward EMT's Cu
    assert skipped.status == "skipped" and "Sr, Ti" in skipped.reason
    (stuck,) = relax_all([strained], "emt", steps=1)
    assert stuck.status == "not_converged" and stuck.structure is not None
    assert "not reached in 1 steps" in stuck.reason


def test_a_potential_that_raises_is_flagged_not_raised():
    class Broken(Potential):
        name = "emt"

        def evaluate(self, atoms_list):
            return [RuntimeError("no forces today") for _ in atoms_list]

    result = relax_structure(rocksalt(), Broken())
    assert result.status == "failed" and "no forces today" in result.reason
    (flagged,) = relax_all([rocksalt()], Broken())
    assert flagged.status == "failed" and flagged.energy_per_atom is None


def test_unknown_calculator_is_a_config_error():
    from betavae_core.errors import ConfigError

    with pytest.raises(ConfigError, match="relax must be one of emt, chgnet"):
        relax_all([rocksalt()], "vasp")


def test_tensor_keys_mark_identical_decodings():
    lattice = np.zeros((3, 6))
    frac = np.array([[[0.1, 0.2, 0.3]], [[0.1001, 0.2, 0.3]], [[0.5, 0.2, 0.3]]])
    classes = np.ones((3, 1), dtype=int)
    keys = matching.tensor_keys(lattice, frac, classes)
    assert keys[0] == keys[1] != keys[2]


def _variants(rng):
    """Structures the matcher matches to SrTiO3 (a rotated, permuted, perturbed, strained,
    scaled or supercell copy) and some it does not (other arrangements, formulas)."""
    base = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    out = [base]
    rotated = Structure(Lattice(base.lattice.matrix[[1, 2, 0]]), base.species,
                        base.frac_coords[:, [1, 2, 0]])
    out.append(rotated)  # a symmetry-equivalent setting (axes permuted)
    order = rng.permutation(len(base))
    out.append(Structure(base.lattice, [base.species[i] for i in order],
                         base.frac_coords[order]))  # sites permuted
    for scale in (0.05, 0.15, 0.3):  # displacements within the matcher's tolerance
        shaken = base.copy()
        shaken.perturb(scale)
        out.append(shaken)
    strained = base.copy()
    strained.apply_strain([0.08, -0.05, 0.03])
    out += [strained, base * (2, 1, 1), Structure(Lattice.cubic(4.4), base.species,
                                                   base.frac_coords)]
    swapped = Structure(base.lattice, ["Ti", "Sr", "O", "O", "O"], base.frac_coords)
    tetragonal = base.copy()
    tetragonal.apply_strain([0.0, 0.0, 0.6])
    out += [swapped, tetragonal, Structure(Lattice.cubic(3.9), ["Ba", "Ti", "O", "O", "O"],
                                           base.frac_coords)]
    return out


def test_prefilter_never_separates_what_the_matcher_matches():
    structures = _variants(np.random.default_rng(0))
    n = len(structures)
    prepared = [matching.prepare(s) for s in structures]
    matches = 0
    for i in range(n):
        for j in range(n):
            if matching._fits(structures[i], structures[j]):  # the full matcher
                matches += 1
                assert matching.bucket_key(structures[i]) == matching.bucket_key(structures[j])
                assert matching.may_match(prepared[i], prepared[j]), (i, j)
                assert matching.prepared_fits(prepared[i], prepared[j], structures[i],
                                              structures[j])
    assert matches > n  # there are real matches beyond the diagonal
    # deduplication with the prefilter agrees with comparing every pair with the matcher
    first = matching.deduplicate(structures, range(n))
    brute: dict[int, int] = {}
    reps: list[int] = []
    for i in range(n):
        j = next((r for r in reps if matching._fits(structures[i], structures[r])), None)
        if j is None:
            reps.append(i)
        brute[i] = i if j is None else j
    assert first == brute
    assert all(first[i] == 0 for i in range(1, 9))  # every copy found as a duplicate
    assert first[10] == 10 and first[11] == 11  # a 60 % stretch, another formula: new


def test_lattice_bound_prunes_a_cell_the_matcher_rejects():
    a = Structure(Lattice.cubic(3.9), ["Sr"], [[0, 0, 0]])
    long = Structure(Lattice.tetragonal(3.0, 7.0), ["Sr"], [[0, 0, 0]])
    pa, pl = matching.prepare(a), matching.prepare(long)
    assert not matching.may_match(pl, pa) and not matching._fits(long, a)
