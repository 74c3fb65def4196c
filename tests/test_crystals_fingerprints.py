"""Coverage fingerprints and COV-R / COV-P as CDVAE computes them."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from betavae_core import DataError
from betavae_crystals import evaluations, fingerprints


def perovskite(a: str, b: str, x: str, length: float) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(length), [a, b, x],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="module")
def references() -> list[Structure]:
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [perovskite("Sr", "Ti", "O", 3.905), perovskite("K", "Nb", "O", 4.0),
            perovskite("Cs", "Pb", "F", 4.8), rocksalt]


@pytest.fixture(scope="module")
def reference_fp(references):
    return evaluations.fingerprint_arrays(references, workers=1)


def test_fingerprints_of_a_perovskite_are_cdvae_sized_and_finite():
    srtio3 = perovskite("Sr", "Ti", "O", 3.905)
    struct = fingerprints.structure_fingerprint(srtio3)
    comp = fingerprints.composition_fingerprint(srtio3.composition)
    assert struct.shape == (61,) and np.isfinite(struct).all() and struct.max() > 0
    assert comp.shape == (132,) and np.isfinite(comp).all()
    # Magpie's atomic-number statistics of SrTiO3: min O 8, max Sr 38, mean 84 / 5
    assert comp[:4] == pytest.approx([8, 38, 30, 16.8])
    assert np.isfinite(fingerprints.scale_composition(comp)).all()


def test_cdvae_scaler_constants_and_nan_handling():
    means, stds = fingerprints.COMP_SCALER_MEANS, fingerprints.COMP_SCALER_STDS
    assert means.shape == stds.shape == (132,) and (stds > 0).all()
    # the mean of each feature's range is the mean of its maximum minus that of its minimum
    table = means.reshape(22, 6)
    assert table[:, 2] == pytest.approx(table[:, 1] - table[:, 0], abs=1e-8)
    raw = means.copy()
    raw[[0, 5]] = np.nan
    raw[1] = means[1] + 2 * stds[1]
    scaled = fingerprints.scale_composition(raw)
    assert scaled[0] == scaled[5] == 0 and scaled[1] == pytest.approx(2)
    assert np.abs(scaled[6:]).max() == 0


def test_a_set_covers_itself_completely(reference_fp):
    metrics = evaluations.coverage(*reference_fp, *reference_fp)
    assert metrics["cov_recall"] == metrics["cov_precision"] == 1.0
    assert metrics["amsd_recall"] == metrics["amcd_precision"] == 0.0


def test_draws_without_fingerprints_cover_nothing_and_keep_every_key(reference_fp):
    """All draws pruned or failed: COV 0 over the 5 draws, the distance means None (not
    missing), the counts say why."""
    struct, comp = reference_fp
    none = (np.full((5, struct.shape[1]), np.nan), np.full((5, comp.shape[1]), np.nan))
    metrics = evaluations.coverage(*none, *reference_fp)
    assert metrics["cov_recall"] == metrics["cov_precision"] == 0.0
    assert {k: metrics[k] for k in ("amsd_recall", "amsd_precision", "amcd_recall",
                                    "amcd_precision")} == dict.fromkeys(
        ("amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision"))
    assert metrics["n_coverage_generated"] == 5 and metrics["n_coverage_fingerprinted"] == 0


def test_structures_moved_beyond_a_cutoff_are_not_covered(references, reference_fp):
    rng = np.random.default_rng(0)
    rattled, strained = [], []
    for s in references:
        r = s.copy()
        for i in range(len(r)):
            r.translate_sites([i], rng.normal(size=3) * 0.02, frac_coords=False)
        rattled.append(r)
        t = s.copy()
        t.apply_strain([0.0, 0.0, 0.3])
        strained.append(t)
    near = evaluations.coverage(*evaluations.fingerprint_arrays(rattled, workers=1),
                                *reference_fp)
    assert near["cov_recall"] == near["cov_precision"] == 1.0
    far = evaluations.coverage(*evaluations.fingerprint_arrays(strained, workers=1),
                               *reference_fp)
    assert far["cov_recall"] == far["cov_precision"] == 0.0
    assert far["amsd_precision"] > evaluations.STRUCT_CUTOFF


def test_a_composition_beyond_the_cutoff_is_not_covered():
    ref = evaluations.fingerprint_arrays([perovskite("Sr", "Ti", "O", 3.905)], workers=1)
    close = evaluations.fingerprint_arrays([perovskite("Ba", "Ti", "O", 3.905)], workers=1)
    far = evaluations.fingerprint_arrays([perovskite("K", "Nb", "O", 3.905)], workers=1)
    m_close, m_far = evaluations.coverage(*close, *ref), evaluations.coverage(*far, *ref)
    assert m_close["amcd_recall"] < evaluations.COMP_CUTOFF < m_far["amcd_recall"]
    assert m_close["cov_recall"] == 1.0 and m_far["cov_recall"] == 0.0


def test_unfingerprintable_draws_count_in_the_precision_base(references, reference_fp):
    gen = evaluations.fingerprint_arrays([references[0], None], workers=1)
    assert fingerprints.failed(gen[0]).tolist() == [False, True]
    metrics = evaluations.coverage(*gen, *reference_fp)
    assert metrics["cov_precision"] == 0.5 and metrics["cov_recall"] == 0.25
    assert metrics["n_coverage_fingerprinted"] == 1
    assert evaluations.coverage(*gen, *reference_fp, n_generated=4)["cov_precision"] == 0.25


def test_a_structure_over_the_time_limit_is_given_up(references):
    if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        pytest.skip("SIGALRM is in use by the test runner")
    big = references[0] * (3, 3, 3)
    assert fingerprints._one(big, time_limit=0.01) == (None, None)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL


def test_worker_processes_give_the_same_fingerprints(references, reference_fp, monkeypatch):
    monkeypatch.setattr(fingerprints, "POOL_MIN_ITEMS", 2)
    struct, comp = evaluations.fingerprint_arrays(references, workers=2)
    np.testing.assert_allclose(struct, reference_fp[0])
    np.testing.assert_allclose(comp, reference_fp[1])


def test_composition_rows_are_computed_once_per_formula_and_match(references):
    srtio3 = references[0]
    rows = fingerprints.composition_arrays([srtio3, srtio3 * (2, 1, 1), None, references[3]])
    np.testing.assert_allclose(rows[0], fingerprints.composition_fingerprint(srtio3.composition))
    np.testing.assert_allclose(rows[1], rows[0])  # a supercell has the same fractions
    assert np.isnan(rows[2]).all() and not np.allclose(rows[3], rows[0])


def test_fingerprints_left_out_by_the_mask_are_empty_rows(references, reference_fp):
    struct, comp = evaluations.fingerprint_arrays(references, workers=1,
                                                  only=np.array([True, False, True, False]))
    assert fingerprints.failed(struct).tolist() == [False, True, False, True]
    np.testing.assert_allclose(struct[[0, 2]], reference_fp[0][[0, 2]])
    np.testing.assert_allclose(comp[[0, 2]], reference_fp[1][[0, 2]])
    with pytest.raises(DataError, match="`only` has shape"):
        evaluations.fingerprint_arrays(references, workers=1, only=np.array([True]))


def test_pruning_by_composition_gives_the_coverage_of_all_fingerprints(references,
                                                                       reference_fp):
    rng = np.random.default_rng(1)
    gen = []
    for s in references[:3]:  # near: rattled copies of three references
        r = s.copy()
        r.translate_sites(list(range(len(r))), rng.normal(size=3) * 0.05, frac_coords=False)
        gen.append(r)
    gen += [perovskite("Li", "B", "H", 3.0), perovskite("Cs", "Pb", "F", 5.6),  # far, near
            references[3].copy(), None]
    near = evaluations.within_composition_cutoff(fingerprints.composition_arrays(gen),
                                                 reference_fp[1])
    assert near.tolist() == [True, True, True, False, True, True, False]
    full = evaluations.coverage(*evaluations.fingerprint_arrays(gen, workers=1), *reference_fp)
    pruned_fp = evaluations.coverage_fingerprints(gen, reference_fp, workers=1)
    pruned = evaluations.coverage(*pruned_fp, *reference_fp)
    assert pruned["n_coverage_fingerprinted"] == 5 < full["n_coverage_fingerprinted"] == 6
    assert pruned["cov_recall"] == full["cov_recall"] == 1.0
    assert pruned["cov_precision"] == full["cov_precision"] == pytest.approx(4 / 7)
    covered = evaluations.coverage_items(*pruned_fp, *reference_fp)["precision"]
    assert covered.tolist() == [True, True, True, False, False, True, False]
