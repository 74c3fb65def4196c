"""Crystals: relaxation with CHGNet for real (a few structures, few steps), its one-pass
forces and stress against CHGNet's own `predict_graph`, lockstep relaxation against
ASE's FIRE.run, the filter that computes once per position, EMT in worker processes,
the potential's element coverage, and the pip command when CHGNet is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ase.build import bulk
from crystals_cli import invoke, train_toy_run
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from threadpoolctl import threadpool_limits

from betavae_core.errors import ConfigError
from betavae_crystals import validity
from betavae_crystals.relax import (
    CHGNetPotential,
    EMTPotential,
    _filter_class,
    relax_all,
    relax_batch,
    relax_structure,
    single_points,
)


def strained_srtio3(a: float = 4.15) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="module")
def chgnet():
    pytest.importorskip("chgnet")
    return CHGNetPotential()


def test_chgnet_relaxes_a_strained_perovskite_toward_lower_energy(chgnet):
    start = strained_srtio3()  # 6 % above SrTiO3's 3.9 Å
    (before,) = single_points([start], chgnet)
    (done,) = relax_all([start], chgnet, fmax=0.1, steps=25)
    assert done.status in ("converged", "not_converged") and 0 < done.steps <= 25
    assert np.isfinite(done.energy_per_atom) and done.energy_per_atom < before
    assert done.max_force is not None and done.max_force >= 0
    assert done.structure.lattice.a < start.lattice.a  # the cell shrank
    assert validity.structure_validity(done.structure) == (True, "")
    assert done.structure.composition == start.composition


def test_chgnet_flags_elements_beyond_its_coverage_and_keeps_the_candidate(chgnet):
    americium = Structure(Lattice.cubic(3.5), ["Am", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (flagged,) = relax_all([americium], chgnet, steps=2)
    assert flagged.status == "skipped" and "up to Z = 94" in flagged.reason
    assert "Am" in flagged.reason and flagged.energy_per_atom is None


def test_one_pass_forces_and_stress_match_chgnets_predict_graph(chgnet):
    structures = [strained_srtio3(4.0), strained_srtio3(3.8),
                  Structure(Lattice.from_parameters(4.1, 4.3, 3.9, 88, 93, 91),
                            ["Ba", "Zr", "O", "O", "O"],
                            [[0, 0, 0], [0.52, 0.49, 0.5], [0.5, 0.5, 0.03], [0.5, 0, 0.5],
                             [0.02, 0.5, 0.5]])]
    graphs = [chgnet.model.graph_converter(s) for s in structures]
    ours = chgnet.energy_forces_stress(graphs)  # one batched call
    theirs = [chgnet.model.predict_graph(g, task="efs") for g in graphs]
    for mine, ref in zip(ours, theirs, strict=True):
        assert abs(float(mine["e"]) - float(ref["e"])) < 1e-5  # eV/atom
        assert np.abs(mine["f"] - ref["f"]).max() < 1e-3  # eV/Å, float32 rounding
        assert np.abs(mine["s"] - ref["s"]).max() < 1e-2  # GPa
    # off equilibrium (cubic SrTiO3 has no forces, but stress; the distorted cell both)
    assert np.abs(theirs[2]["f"]).max() > 0.1 and min(np.abs(r["s"]).max() for r in theirs) > 1


def sheared_cu(a: float, shear: float = 0.0, cubic: bool = True):
    atoms = bulk("Cu", "fcc", a=a, cubic=cubic)
    cell = atoms.cell.array.copy()
    cell[0, 1] += shear
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions[0] += [0.05, -0.02, 0.03]
    return atoms


def test_the_filter_computes_once_per_position_and_gives_ases_numbers():
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter

    ours_atoms, ase_atoms = sheared_cu(3.7, 0.2), sheared_cu(3.7, 0.2)
    ours, theirs = _filter_class()(ours_atoms), FrechetCellFilter(ase_atoms)
    for atoms in (ours_atoms, ase_atoms):
        atoms.calc = EMT()
    for move in (0.0, 0.01):  # the cached numbers follow a move of the atoms and cell
        for f in (ours, theirs):
            f.set_positions(f.get_positions() + move)
        assert np.array_equal(ours.get_positions(), theirs.get_positions())
        assert np.array_equal(ours.get_forces(), theirs.get_forces())
        assert np.array_equal(ours.get_forces(), theirs.get_forces())  # the cached copy
        assert np.array_equal(ours.stress, theirs.stress)


def test_lockstep_relaxation_follows_fire_run_step_for_step():
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    starts = [(3.5, 0.0), (3.75, 0.1), (3.62, 0.3)]
    expected = []
    with threadpool_limits(limits=1):  # as relax_batch runs (BLAS threads only contend)
        for a, shear in starts:  # ASE as documented: FIRE.run on a FrechetCellFilter
            atoms = sheared_cu(a, shear, cubic=False)
            atoms.calc = EMT()
            fire = FIRE(FrechetCellFilter(atoms), logfile=None)
            converged = fire.run(fmax=0.02, steps=150)
            expected.append((converged, fire.nsteps,
                             atoms.get_potential_energy() / len(atoms)))
    structures = [AseAtomsAdaptor.get_structure(sheared_cu(a, s, cubic=False))
                  for a, s in starts]
    together = relax_batch(structures, EMTPotential(), fmax=0.02, steps=150, width=2)
    assert len({r.steps for r in together}) > 1  # they finish at different steps
    for (converged, steps, energy), r in zip(expected, together, strict=True):
        assert r.converged == converged and r.steps == steps
        assert abs(r.energy_per_atom - energy) < 1e-9
    alone = relax_structure(structures[1], EMTPotential(), fmax=0.02, steps=150)
    assert alone.steps == together[1].steps and alone.energy_per_atom == \
        pytest.approx(together[1].energy_per_atom, abs=1e-9)


def test_a_structure_that_fails_mid_batch_leaves_the_others_relaxing():
    class FailsOnGold(EMTPotential):
        def evaluate(self, atoms_list):
            return [RuntimeError("no gold today") if "Au" in a.get_chemical_symbols()
                    else r for a, r in zip(atoms_list, super().evaluate(atoms_list),
                                           strict=True)]

    gold = AseAtomsAdaptor.get_structure(bulk("Au", "fcc", a=4.2))
    copper = AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.7))
    results = relax_batch([copper, gold, copper], FailsOnGold(), fmax=0.02, steps=100)
    assert [r.status for r in results] == ["converged", "failed", "converged"]
    assert "no gold today" in results[1].reason
    assert results[0].energy_per_atom == results[2].energy_per_atom


@pytest.mark.parametrize("workers", [None, 2])
def test_missing_chgnet_gives_the_pip_command(monkeypatch, workers):
    for name in [m for m in sys.modules if m == "chgnet" or m.startswith("chgnet.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "chgnet", None)  # `import chgnet` now raises
    monkeypatch.setitem(sys.modules, "chgnet.model", None)
    rocksalt = AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))
    with pytest.raises(ConfigError, match=r"pip install 'betavae\[chgnet\]'"):
        relax_all([rocksalt], "chgnet", workers=workers)


@pytest.mark.slow  # spawning two workers that import pymatgen: ~15 s on 2 busy cores
def test_emt_in_worker_processes_matches_this_process():
    structures = [AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=a)) for a in (3.5, 3.75)]
    here = relax_all(structures, EMTPotential(), fmax=0.02, steps=100)
    there = relax_all(structures, "emt", fmax=0.02, steps=100, workers=2, progress=True)
    assert [r.status for r in there] == ["converged", "converged"]
    assert np.allclose([r.energy_per_atom for r in here], [r.energy_per_atom for r in there])
    # both start points relax to the same EMT lattice constant
    assert abs(there[0].structure.volume - there[1].structure.volume) < 0.05


def test_workers_must_be_a_positive_count():
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        relax_all([], "emt", workers=0)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return train_toy_run(tmp_path_factory.mktemp("crystals_relax"))


@pytest.mark.usefixtures("fresh_plugins")
def test_generate_with_chgnet_writes_energies_above_hull_and_the_sun_rate(toy_run, tmp_path):
    import csv
    import json

    pytest.importorskip("chgnet")
    out = tmp_path / "cands"
    invoke("generate", toy_run, "-n", "8", "--out", out, "-g", "relax=chgnet",
           "-g", "relax_steps=3", "-g", "keep=valid")
    report = json.loads((out / "report.json").read_text())
    funnel, stability = report["funnel"], report["stability"]
    assert list(funnel)[-3:] == ["relaxed", "stable", "on_or_below_hull"]
    assert funnel["relaxed"] >= funnel["stable"] >= funnel["on_or_below_hull"] >= 0
    assert "not DFT energies" in stability["caveat"] and stability["potential"] == "CHGNet"
    assert stability["sun_rate"] is not None and 0 <= stability["sun_rate"] <= 1
    with open(out / "candidates.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["accepted"] == "True"]
    assert rows and {"e_form_per_atom", "e_above_hull", "hull_problem", "max_force"} <= set(rows[0])
    with_energy = [r for r in rows if r["energy_per_atom"]]
    assert with_energy and all(np.isfinite(float(r["energy_per_atom"])) for r in with_energy)
    for r in with_energy:  # a number, or no number and the reason
        assert (r["e_above_hull"] != "") != (r["hull_problem"] != ""), r
    assert any(r["e_above_hull"] for r in with_energy)
    assert (out / "e_above_hull.png").stat().st_size > 1000
    assert (out / "hull_chgnet.json").is_file()
    # the reference energies are kept with the model, for the next generate on this run
    assert (toy_run / "hull_chgnet.json").is_file() and "cached in" in stability["cache"]
