"""Crystals loaders: every input format, and each bad input named by file or row."""

from __future__ import annotations

import json
import warnings

import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import betavae_core
from betavae_core.errors import ConfigError, DataError
from betavae_crystals import from_structures
from betavae_crystals.loaders import load_csv, load_structures

pytestmark = pytest.mark.usefixtures("fresh_plugins")

BAD_CIF = "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\n_atom_site_fract_x\n"
DISORDERED_CIF = """data_disordered
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   4.0
_cell_length_b   4.0
_cell_length_c   4.0
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Cu  Cu0  0.0  0.0  0.0  0.5
  Au  Au0  0.0  0.0  0.0  0.5
"""


def structures() -> list[Structure]:
    return [
        Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]),
        Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
    ]


@pytest.fixture
def cif_dir(tmp_path):
    folder = tmp_path / "structures"
    folder.mkdir()
    for i, s in enumerate(structures()):
        (folder / f"s{i}.cif").write_text(str(CifWriter(s)))
    s = structures()[0]
    s.to(filename=str(folder / "POSCAR"), fmt="poscar")
    (folder / "notes.txt").write_text("not a structure")
    return folder


def test_folder_of_cif_and_poscar_is_claimed_and_loaded(cif_dir):
    data, source = betavae_core.load_data(str(cif_dir))
    assert source["loader"] == "crystal_structures"
    assert len(data) == 4 and data.domain == "crystals" and data.generator == "crystals"
    assert set(data.metadata["name"]) == {"s0.cif", "s1.cif", "s2.cif", "POSCAR"}
    assert data.attrs["representation"]["max_sites"] == 5
    assert data.attrs["skipped"]["count"] == 0


def test_extxyz_ase_db_and_csv_load_with_properties(tmp_path):
    import ase.db
    import ase.io

    atoms = [bulk("Cu", "fcc", a=3.6), bulk("Al", "fcc", a=4.05), bulk("Ni", "fcc", a=3.52)]
    for a, e in zip(atoms, (-0.1, -0.3, -0.2), strict=True):
        a.info["formation_energy"] = e
    ase.io.write(tmp_path / "frames.extxyz", atoms, format="extxyz")
    data, source = betavae_core.load_data(str(tmp_path / "frames.extxyz"))
    assert len(data) == 3 and source["loader"] == "crystal_structures"
    assert data.attrs["property"]["name"] == "formation_energy"
    with ase.db.connect(str(tmp_path / "set.db")) as db:
        for a in atoms:
            db.write(a, energy_per_atom=-1.0)
    data, source = betavae_core.load_data(str(tmp_path / "set.db"))
    assert len(data) == 3 and source["loader"] == "crystal_ase_db"
    assert data.attrs["property"]["column"] == "energy_per_atom"
    rows = ["material_id,cif,heat_ref"] + [
        f'm{i},"{CifWriter(s)}",{0.5 * i}' for i, s in enumerate(structures())]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    data, source = betavae_core.load_data(str(tmp_path / "table.csv"))
    assert source["loader"] == "crystal_csv" and data.metadata["name"] == ["m0", "m1", "m2"]
    assert data.attrs["property"] == {**data.attrs["property"], "name": "formation_energy",
                                      "column": "heat_ref"}
    assert data.context["property_mask"].sum() == 3


def test_unparseable_and_disordered_cifs_are_skipped_by_name_or_strict_errors(cif_dir):
    (cif_dir / "broken.cif").write_text(BAD_CIF)
    (cif_dir / "disordered.cif").write_text(DISORDERED_CIF)
    with pytest.warns(UserWarning, match=r"skipped 2 of 6 structures.*broken\.cif.*"
                      r"disordered\.cif: partial occupancy"):
        data = load_structures(cif_dir)
    assert len(data) == 4 and data.attrs["skipped"]["count"] == 2
    assert any("broken.cif: cannot parse CIF" in p for p in data.attrs["skipped"]["first"])
    with pytest.raises(DataError, match=r"broken\.cif: cannot parse CIF.*strict"):
        betavae_core.load_data(str(cif_dir), options={"strict": True})


def test_disordered_structure_in_memory_is_named():
    disordered = Structure(Lattice.cubic(4.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(DataError, match=r"alloy: partial occupancy"):
        from_structures([structures()[0], disordered], names=["cu", "alloy"])


def test_empty_directory_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty holds no structure files \(CIF"):
        betavae_core.load_data(str(empty))


def test_csv_bad_row_is_named_and_unknown_option_refused(tmp_path):
    (tmp_path / "t.csv").write_text(f'material_id,cif\nok,"{CifWriter(structures()[0])}"\n'
                                    f'bad,"{BAD_CIF}"\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_csv(tmp_path / "t.csv")
    assert len(data) == 1
    assert any("t.csv row 3 (bad): cannot parse CIF" in str(w.message) for w in caught)
    with pytest.raises(ConfigError, match=r"loader 'crystal_csv' has no option\(s\) "
                       r"\['colour'\]; its options are: strict \(default False\), .*limit"):
        betavae_core.load_data(str(tmp_path / "t.csv"), options={"colour": "red"})
    with pytest.raises(ConfigError, match="limit must be an integer >= 1; got 0"):
        betavae_core.load_data(str(tmp_path / "t.csv"), options={"limit": 0})


def test_too_many_sites_for_the_maximum_is_named(cif_dir, tmp_path):
    with pytest.warns(UserWarning, match=r"s2\.cif: 5 sites in its primitive cell "
                      r"\(SrTiO3\); the maximum is 2"):
        data = load_structures(cif_dir, max_sites=2)
    assert len(data) == 3
    with pytest.raises(DataError, match=r"s2\.cif: 5 sites.*maximum is 2"):
        load_structures(cif_dir, max_sites=2, strict=True)
    # Encoding for a fitted model: its maximum and vocabulary rule.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"attrs": data.attrs}}))
    big = tmp_path / "big"
    big.mkdir()
    (big / "srtio3.cif").write_text(str(CifWriter(structures()[2])))
    with pytest.raises(DataError, match=r"srtio3\.cif: 5 sites.*maximum is 2"):
        load_structures(big, like=str(run), strict=True)


def _table(path, header, rows):
    """A CSV with a cif column: `rows` are (id, structure, further values...)."""
    lines = [header] + [",".join([i, f'"{CifWriter(s)}"', *map(str, rest)])
                        for i, s, *rest in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_bad_property_value_names_its_row_and_column_instead_of_dropping_it(tmp_path):
    cu, cscl, srtio3 = structures()
    table = _table(tmp_path / "t.csv", "material_id,cif,formation_energy,band_gap",
                   [("m0", cu, -0.5, 1.0), ("m1", cscl, "-0.3 eV", 2.0),
                    ("m2", srtio3, -1.2, "n/a!")])
    fix = r"Clean the value .*-o property=none"
    with pytest.raises(DataError, match=r"t\.csv row 3 \(m1\): column 'formation_energy' "
                       r"holds '-0\.3 eV', not a number\. " + fix):
        betavae_core.load_data(str(table))  # auto: the formation energy
    with pytest.raises(DataError, match=r"t\.csv row 4 \(m2\): column 'band_gap' holds "
                       r"'n/a!'"):
        load_csv(table, property="band_gap")
    data = load_csv(table, property="none")  # the fix the message names
    assert data.attrs["property"] is None and len(data) == 3
    # Empty cells and NA are unknown values, not errors; the property is kept.
    _table(tmp_path / "ok.csv", "material_id,cif,formation_energy",
           [("m0", cu, -0.5), ("m1", cscl, ""), ("m2", srtio3, "NA")])
    data = load_csv(tmp_path / "ok.csv")
    assert data.attrs["property"]["column"] == "formation_energy"
    assert data.context["property_mask"].tolist() == [1.0, 0.0, 0.0]


def test_a_non_numeric_property_in_memory_names_the_structure():
    with pytest.raises(DataError, match=r"nacl: property 'gap' is 'wide', not a number"):
        from_structures(structures()[:2], {"gap": [1.0, "wide"]}, names=["cu", "nacl"])


def test_repeated_structure_ids_are_refused_naming_both_rows(tmp_path):
    cu, cscl, srtio3 = structures()
    table = _table(tmp_path / "ids.csv", "material_id,cif",
                   [("m0", cu), ("m1", cscl), ("m0", srtio3)])
    with pytest.raises(DataError, match=r"structure id 'm0' repeats \(ids\.csv row 2 \(m0\) "
                       r"and ids\.csv row 4 \(m0\)\); each structure needs its own id"):
        betavae_core.load_data(str(table))
    with pytest.raises(DataError, match=r"structure id 'a' repeats .*names= \(Python\)"):
        from_structures([cu, cscl], names=["a", "a"])
