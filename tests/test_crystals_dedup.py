"""The array funnel of the crystals generator against the per-structure one: batch
validity, the fingerprint + emulated-matcher prefilter of deduplication and novelty, and
the CIF / space-group writers, each checked against pymatgen's own answer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("smact")

from pymatgen.core import Composition, Lattice, Structure  # noqa: E402
from pymatgen.io.cif import CifWriter  # noqa: E402

from betavae_crystals import matcher_arrays, matching, validity  # noqa: E402
from betavae_crystals.generation import DecodedCells, space_group, space_groups  # noqa: E402
from betavae_crystals.representation import (  # noqa: E402
    CrystalRepresentation,
    lattice_features,
)

SPECIES = ("Sr", "Ti", "Na", "Cl", "O")


def cells_of(structures: list[Structure]) -> DecodedCells:
    """Decoded-item arrays holding `structures` as they are (no canonical cell)."""
    rep = CrystalRepresentation(SPECIES, max(len(s) for s in structures), True)
    items = np.zeros((len(structures), *rep.event_shape))
    for n, s in enumerate(structures):
        feats = lattice_features(s.lattice.matrix)
        items[n, 0, :3], items[n, 1, :3] = feats[:3], feats[3:]
        items[n, 2:, 3] = 1.0  # empty
        for k, site in enumerate(s):
            items[n, 2 + k, :3] = site.frac_coords
            items[n, 2 + k, 3] = 0.0
            items[n, 2 + k, 4 + SPECIES.index(site.specie.symbol)] = 1.0
    return DecodedCells.from_items(rep, items)


def perovskite(rng: np.random.Generator, amplitude: float = 0.06) -> Structure:
    """A distorted SrTiO3 cell (5 sites)."""
    lattice = Lattice(np.diag([3.9, 3.9, 3.9]) + rng.normal(0, 0.08, (3, 3)))
    frac = np.array([[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    frac = frac + rng.normal(0, amplitude, frac.shape)
    return Structure(lattice, ["Sr", "Ti", "O", "O", "O"], frac)


def planted() -> list[Structure]:
    """Three distorted perovskites, each with copies the matcher calls the same (moved,
    sites permuted, rattled; a 2x1x1 supercell of the first) and near-misses of the first
    it calls different (Sr and Ti swapped, a stretched cell, Sr and an O exchanged)."""
    rng = np.random.default_rng(3)
    out = []
    for b in range(3):
        base = perovskite(rng)
        moved = Structure(base.lattice, [base[k].specie for k in (4, 2, 0, 3, 1)],
                          base.frac_coords[[4, 2, 0, 3, 1]] + rng.uniform(0, 1, 3))
        rattled = base.copy()
        rattled.perturb(0.03)
        out += [base, moved, rattled]
        if b == 0:
            first = base
    out.append(first.make_supercell([2, 1, 1], in_place=False))
    swapped = Structure(first.lattice, ["Ti", "Sr", "O", "O", "O"], first.frac_coords)
    stretched = Structure(Lattice(first.lattice.matrix * [[1], [1], [3.0]]), first.species,
                          first.frac_coords)
    exchanged = Structure(first.lattice, ["O", "Ti", "Sr", "O", "O"], first.frac_coords)
    return out + [swapped, stretched, exchanged]


def test_fingerprints_ignore_cell_choice_order_translation_and_supercell():
    s = perovskite(np.random.default_rng(0))
    moved = Structure(s.lattice, [s[k].specie for k in (3, 1, 4, 0, 2)],
                      s.frac_coords[[3, 1, 4, 0, 2]] + [0.37, 0.11, 0.9])
    skewed = s.copy()
    skewed.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # same lattice, other basis
    bigger = s.make_supercell([2, 1, 1], in_place=False)
    other = perovskite(np.random.default_rng(1))
    cells = cells_of([s, moved, skewed, bigger, other])
    f = matching.distance_fingerprints(cells.matrices, cells.frac, cells.classes)
    for k in (1, 2, 3):
        assert np.abs(f[k] - f[0]).max() < 1e-8, k
    assert np.abs(f[4] - f[0]).max() > 0.01


def test_prefilter_decides_every_planted_pair_as_the_matcher_does():
    structures = planted()
    cells = cells_of(structures)
    pre = cells.prefilter(range(len(structures)))
    verdicts = {True: 0, False: 0}
    for i, j in itertools.combinations(range(len(structures)), 2):
        ours = pre.first_fit(i, pre, pre.fingerprints[[j]], [j]) == 0
        theirs = matching.prepared_fits(matching.prepare(structures[i]),
                                        matching.prepare(structures[j]), structures[i],
                                        structures[j])
        assert ours == theirs, (i, j, ours)
        verdicts[theirs] += 1
    assert verdicts[True] >= 6 and verdicts[False] >= 10  # both kinds are planted
    assert pre.counts["emulation"] > pre.counts["matcher"]  # the prefilter decided most
    first = matching.deduplicate_prefiltered(pre, range(len(structures)))
    assert first == matching.deduplicate(structures, range(len(structures)))
    assert first[1] == first[2] == first[9] == 0  # moved, rattled, supercell
    assert all(first[k] == k for k in (10, 11, 12))  # the near-misses


def test_novelty_prefilter_finds_the_training_structure_the_matcher_finds():
    structures = planted()
    train = cells_of(structures[:9:3])  # the three bases
    trained = matching.PrefilteredTrainingSet.build(train.prefilter(range(3)), ["a", "b", "c"])
    cands = cells_of(structures)
    pre = cands.prefilter(range(len(structures)))
    reference = matching.TrainingSet.build(structures[:9:3], ["a", "b", "c"])
    ours = [trained.match(pre, i) for i in range(len(structures))]
    assert ours == [reference.match(s) for s in structures]
    assert ours[:3] == ["a"] * 3 and ours[10:] == [None] * 3


def test_batch_validity_equals_the_per_structure_checks():
    rng = np.random.default_rng(5)
    structures = []
    for k in range(40):
        scale = 1.2 if k % 4 == 0 else 4.0  # every fourth cell is too small
        lattice = Lattice(np.eye(3) * scale + rng.normal(0, 0.6, (3, 3)))
        species = list(rng.choice(["Na", "Cl", "Sr", "Ti", "O"], size=int(rng.integers(1, 5))))
        structures.append(Structure(lattice, species, rng.uniform(0, 1, (len(species), 3))))
    structures.append(Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]))
    cells = cells_of(structures)
    ok, why = validity.structure_validity_arrays(cells.matrices, cells.frac, cells.occupied)
    comp_ok, comp_why = validity.composition_validity_arrays(cells.classes, SPECIES)
    for k, s in enumerate(structures):
        ref_ok, ref_why = validity.structure_validity(s)
        assert ok[k] == ref_ok and why[k].split()[:1] == ref_why.split()[:1], k
        assert (comp_ok[k], comp_why[k]) == validity.composition_validity(s.composition), k
    assert 0 < ok.sum() < len(ok) and 0 < comp_ok.sum() < len(ok)
    assert why[-1].startswith("atoms 0.2 Å apart")


def test_cif_text_and_space_groups_equal_pymatgens():
    rng = np.random.default_rng(2)
    structures = [perovskite(rng, 0.0), perovskite(rng), Structure(
        Lattice.cubic(5.6), ["Na", "Na", "Cl", "Cl"],
        [[0, 0, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, .5]])]
    cells = cells_of(structures)
    for k, s in enumerate(structures):
        assert cells.cif(k) == str(CifWriter(cells.structures[k]))  # as the generator
        assert np.allclose(cells.structures[k].frac_coords, s.frac_coords % 1.0)
        assert cells.formulas()[k] == s.composition.reduced_formula
        assert cells.densities()[k] == pytest.approx(s.density, rel=1e-12)
    assert space_groups(cells, range(3), 0.1) == [space_group(s, 0.1) for s in structures]
    assert Composition(cells.formula_of(2)[1]) == structures[2].composition


def test_the_mixture_kept_in_the_run_folder_gives_the_same_draws(tmp_path):
    from threadpoolctl import threadpool_limits

    from betavae_crystals.latents import mixture_draws

    with threadpool_limits(limits=1):  # k-means threads only contend on a busy host
        _check_kept_mixture(tmp_path, mixture_draws)


def _check_kept_mixture(tmp_path, mixture_draws) -> None:
    means = np.random.default_rng(0).normal(size=(300, 4))
    fresh = mixture_draws(means, 200, seed=1, components=5)
    first = mixture_draws(means, 200, seed=1, components=5, cache_dir=tmp_path)
    kept = list(tmp_path.glob("latent_mixture_*.npz"))
    again = mixture_draws(means, 200, seed=1, components=5, cache_dir=tmp_path)
    assert len(kept) == 1 and (fresh == first).all() and (first == again).all()
    other = mixture_draws(means[:-1], 200, seed=1, components=5, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("latent_mixture_*.npz"))) == 2  # other encodings
    assert not (other == again).all()


def near_tolerance_pairs(count: int = 36) -> list[tuple[Structure, Structure]]:
    """Distorted perovskites and copies with one site moved by about the matcher's
    tolerance (stol 0.5 of (V/atom)^(1/3)), some strained or rotated in cell choice:
    pairs on both sides of its verdict, many within a few per cent of it."""
    rng = np.random.default_rng(11)
    pairs = []
    for k in range(count):
        base = perovskite(rng, 0.04)
        scale = (base.volume / len(base)) ** (1 / 3)
        frac = base.frac_coords.copy()
        step = rng.normal(size=3)
        frac[k % 5] += base.lattice.get_fractional_coords(
            step / np.linalg.norm(step) * scale * rng.uniform(0.5, 0.9))
        strain = np.eye(3) + rng.normal(0, 0.04, (3, 3))
        lattice = Lattice(base.lattice.matrix @ strain)
        other = Structure(lattice, base.species, frac)
        if k % 3 == 0:  # another basis of the same lattice
            other.make_supercell([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
        pairs.append((base, other))
    return pairs


def test_replayed_matcher_gives_the_matchers_verdict_near_its_tolerance():
    pairs = near_tolerance_pairs()
    cells = cells_of([s for pair in pairs for s in pair])
    pre = cells.prefilter(range(2 * len(pairs)))
    verdicts = {True: 0, False: 0}
    for k, (a, b) in enumerate(pairs):
        ours = matcher_arrays.strict_fit(*pre.arrays(2 * k), *pre.arrays(2 * k + 1))
        theirs = matching.protocol_matcher().fit(a, b)
        assert ours is None or ours == theirs, (k, ours, theirs)
        if ours is not None:
            verdicts[theirs] += 1
    assert verdicts[True] >= 5 and verdicts[False] >= 5  # both sides, and decided
    assert sum(verdicts.values()) >= 0.9 * len(pairs)


def test_replayed_matcher_defers_when_the_reduced_cell_is_not_unique():
    # a face-centred cubic primitive cell: a - b is as short as a, so reduced bases
    # differ by more than signed permutations, and the replay leaves it to the matcher
    fcc = Lattice([[0, 2, 2], [2, 0, 2], [2, 2, 0]])
    s = Structure(fcc, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert not matcher_arrays.unique_reduced(fcc.matrix)
    assert matcher_arrays.unique_reduced(np.diag([3.9, 4.0, 4.1]))
    cells = cells_of([s, s.copy()])
    pre = cells.prefilter(range(2))
    assert matcher_arrays.strict_fit(*pre.arrays(0), *pre.arrays(1)) is None
    assert pre.fits(0, pre, 1) and pre.counts["matcher"] == 1  # the matcher decided


def test_deduplication_in_worker_processes_gives_the_serial_verdicts(monkeypatch):
    # four formulas (four buckets), each with copies the matcher calls the same (moved,
    # rattled) and other cells of its formula; tensor-identical copies too
    rng = np.random.default_rng(5)
    structures = []
    for a, b, x in (("Sr", "Ti", "O"), ("Na", "Ti", "O"), ("Sr", "Ti", "Cl"), ("Na", "Sr", "O")):
        for _ in range(3):
            cell = perovskite(rng)
            base = Structure(cell.lattice, [a, b, x, x, x], cell.frac_coords)
            rattled = base.copy()
            rattled.perturb(0.03)
            moved = Structure(base.lattice, base.species,
                              base.frac_coords + rng.uniform(0, 1, 3))
            structures += [base, rattled, moved, base.copy()]
    order = rng.permutation(len(structures))
    structures = [structures[k] for k in order]
    cells = cells_of(structures)
    keys = matching.tensor_keys(cells.lattice, cells.frac, cells.classes)
    everything = range(len(structures))
    serial = cells.prefilter(everything)
    expected = matching.deduplicate_prefiltered(serial, everything, keys)
    assert expected == matching.deduplicate(structures, everything, keys)  # the matcher's
    assert 4 <= sum(expected[i] == i for i in everything) < len(structures) // 2
    monkeypatch.setattr(matching, "PARALLEL_FROM", 0)
    shared = cells.prefilter(everything)
    assert len(matching.shards([[0]] * 4, 2 * matching.SHARDS_PER_WORKER)) == 4
    assert matching.deduplicate_prefiltered(shared, everything, keys, workers=2) == expected
    assert shared.counts == serial.counts  # the workers' pair counts come back
    assert not shared.strict_cells and not shared.prepared  # the work ran elsewhere
