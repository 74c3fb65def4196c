"""Crystals: energy above the hull with pymatgen's PhaseDiagram over references built with
the same potential (EMT here: fast and exact to check), the missing-reference cases, the
user's reference set, the cache, and the funnel / S.U.N. counts."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from betavae_core.errors import DataError
from betavae_crystals import hull
from betavae_crystals.relax import EMTPotential, Relaxation, single_points


class CountingEMT(EMTPotential):
    """EMT that counts how many structures it evaluated."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def evaluate(self, atoms_list):
        self.calls += len(atoms_list)
        return super().evaluate(atoms_list)


def cu(a: float = 3.6) -> Structure:
    return AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=a))


def cu3au() -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.75), ["Au", "Cu"],
                                     [[0, 0, 0], [0, 0.5, 0.5]])


def test_elemental_references_from_ase_and_the_error_that_names_the_element():
    crystal, cell = hull.elemental_structure("Cu")
    assert cell and crystal.composition.reduced_formula == "Cu"
    molecule, cell = hull.elemental_structure("O")  # ase keeps O as a diatomic molecule
    assert not cell and len(molecule) == 2 and molecule.lattice.a == hull.MOLECULE_BOX
    ring, cell = hull.elemental_structure("S")  # α-S is a crystal of S8 crown rings
    bonds = np.sort(ring.distance_matrix + 99 * np.eye(8), axis=1)[:, :2]
    assert not cell and len(ring) == 8 and np.allclose(bonds, 2.05)
    assert np.sort(ring.distance_matrix[0])[3] > 3.0  # a ring, not a cluster
    for symbol in ("Pm", "Pa"):  # neither ase's reference states nor its Delta-test set
        with pytest.raises(DataError, match=f"no elemental reference for {symbol}:.*"
                                            f"reference=PATH with a structure of pure "
                                            f"{symbol}"):
            hull.elemental_structure(symbol)


@pytest.mark.parametrize("symbol", ["B", "Mn", "Ga", "Te", "P", "Cl", "Se", "Br", "I"])
def test_elements_bulk_cannot_build_come_from_ases_delta_test_crystals(symbol):
    structure, cell = hull.elemental_structure(symbol)
    assert cell and [el.symbol for el in structure.composition] == [symbol]
    assert structure.is_valid(tol=1.0)  # no two atoms closer than 1 Å
    assert structure.volume / len(structure) > 5.0  # Å³/atom: diamond, the densest, is 5.7


def test_energy_above_hull_is_the_energy_over_the_relaxed_element():
    emt = EMTPotential()
    built = hull.build_hull([Composition("Cu")], emt)
    (e_ref,) = [e for _, comp, e, src in built.entries if src == "element"]
    result = built.evaluate(Composition("Cu4"), e_ref + 0.2)
    assert result.e_above_hull == pytest.approx(0.2, abs=1e-4)
    assert result.e_form_per_atom == pytest.approx(0.2, abs=1e-4)
    below = built.evaluate(Composition("Cu"), e_ref - 0.05)
    assert below.e_above_hull == pytest.approx(-0.05, abs=1e-4)  # below this hull


def test_training_structures_shape_the_hull_of_a_binary():
    emt = EMTPotential()
    ordered = cu3au()
    built = hull.build_hull([Composition("Cu3Au")], emt, training=[("L1_2", ordered)])
    assert {src for *_, src in built.entries} == {"element", "training"}
    (e_l12,) = single_points([ordered], emt)
    on = built.evaluate(ordered.composition, e_l12)
    assert on.e_above_hull == pytest.approx(0.0, abs=1e-4)
    # e_form of the training phase: its energy less 3/4 Cu + 1/4 Au per atom
    refs = {next(iter(c)).symbol: e for _, c, e, s in built.entries if s == "element"}
    assert on.e_form_per_atom == pytest.approx(e_l12 - 0.75 * refs["Cu"] - 0.25 * refs["Au"],
                                               abs=1e-4)
    above = built.evaluate(ordered.composition, e_l12 + 0.3)
    assert above.e_above_hull == pytest.approx(0.3, abs=1e-4)


def test_no_reference_coverage_is_an_empty_value_with_the_reason_never_a_crash():
    built = hull.build_hull([Composition("CuPm"), Composition("Cu")], EMTPotential())
    result = built.evaluate(Composition("CuPm"), -1.0)
    assert result.e_above_hull is None and result.e_form_per_atom is None
    assert "no elemental reference for Pm (system Cu-Pm)" in result.reason
    assert "ase has no crystal" in result.reason
    assert "Pm" in built.summary()["elements_without_reference"]
    assert built.evaluate(Composition("Cu"), None).reason == "no energy (not relaxed)"
    assert built.evaluate(Composition("Cu"), -3.0).e_above_hull is not None


def test_user_reference_set_is_read_and_a_missing_path_is_named(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "cu3au.cif").write_text(str(CifWriter(cu3au())))
    items = hull.read_reference(folder)
    assert len(items) == 1 and items[0][1].composition.reduced_formula == "Cu3Au"
    built = hull.build_hull([Composition("Cu3Au")], EMTPotential(), reference=items)
    assert [src for *_, src in built.entries].count("reference") == 1
    with pytest.raises(DataError, match="reference=.*nowhere: no such file"):
        hull.read_reference(tmp_path / "nowhere")


def test_reference_energies_are_cached_in_the_run_folder(tmp_path):
    run_dir, out1, out2 = tmp_path / "run", tmp_path / "a", tmp_path / "b"
    for d in (out1, out2):
        d.mkdir()
    relaxed = {0: Relaxation("converged", -3.0, 5, cu(3.61)),
               1: Relaxation("skipped", reason="EMT has no parameters for Sr")}
    training = [("L1_2", cu3au()), ("cu", cu(3.62))]
    first = CountingEMT()
    energies, info = hull.assess(relaxed, first, training, None, out1, run_dir, 0.05, 50)
    assert first.calls > 0 and info["cached_energies_reused"] == 0
    assert (run_dir / "hull_emt.json").is_file() and (out1 / "hull_emt.json").is_file()
    assert "cached in" in info["cache"] and energies[0].e_above_hull is not None
    assert energies[1].e_above_hull is None and "relaxation skipped" in energies[1].reason
    again = CountingEMT()
    energies2, info2 = hull.assess(relaxed, again, training, None, out2, run_dir, 0.05, 50)
    assert again.calls == 0 and info2["cached_energies_reused"] > 0
    assert energies2[0].e_above_hull == energies[0].e_above_hull


def test_funnel_and_sun_count_only_converged_stable_novel_candidates():
    relaxed = {0: Relaxation("converged", -1.0), 1: Relaxation("converged", -1.0),
               2: Relaxation("not_converged", -1.0), 3: Relaxation("converged", -1.0),
               4: Relaxation("skipped")}
    energies = {0: hull.EnergyResult(-0.5, -0.01), 1: hull.EnergyResult(0.1, 0.05),
                2: hull.EnergyResult(0.0, 0.0), 3: hull.EnergyResult(0.3, 0.4),
                4: hull.EnergyResult(reason="no energy")}
    assert hull.funnel(relaxed, energies) == {"relaxed": 3, "stable": 2,
                                              "on_or_below_hull": 1}
    sun = hull.sun(10, relaxed, energies, novel={1, 2, 3, 4})
    assert sun["sun_count"] == 1 and sun["sun_rate"] == 0.1  # only 1 is stable and novel
    assert sun["without_e_above_hull"] == 1
    assert hull.sun(10, relaxed, energies, novel=None)["sun_rate"] is None
