"""Evaluations in the CDVAE protocol on a fitted model and held-out crystals.

* `crystal_reconstruction`: each held-out structure is encoded (posterior mean), decoded
  (most probable species, mean coordinates and lattice) and compared with the original
  by the protocol's StructureMatcher: match rate, and RMSE (the matcher's normalised
  RMS displacement) averaged over matched pairs.
* `crystal_generation`: `n_samples` latent draws decoded the same way (from the mixture
  over the run's training encodings, `run.train`; from the prior with `latent=prior`, or
  when the training split is unknown, which the metrics then say). Validity
  (structural, compositional, both) over all draws. Coverage as CDVAE's `compute_cov`:
  on CDVAE's fingerprints (`fingerprints`: CrystalNN "ops" averaged over sites; Magpie
  scaled by CDVAE's fixed CompScaler), Euclidean distances, COV-R = share of held-out
  structures with a generated one within both cutoffs, COV-P = generated structures
  within both cutoffs of a held-out one, divided by the number of draws. As in CDVAE, the
  generated side is every draw, valid or not (CDVAE's `GenEval.get_coverage` passes all
  crystals); draws that cannot be fingerprinted are left out but still count in COV-P's
  base. CrystalNN (the slow part) runs only on draws whose composition lies within the
  compositional cutoff of a held-out one (`coverage_fingerprints`): no other draw can
  count, so COV-R and COV-P are exactly those of fingerprinting all draws.
  `n_coverage` takes a random subset of the draws instead of all; fewer draws can only
  lower COV-R (in expectation). Cutoffs: structural 0.2, compositional 4,
  CDVAE's for Perov-5 and Carbon-24 (its `COV_Cutoffs`; MP-20 uses 0.4 / 10). Also the
  mean nearest distances (AMSD / AMCD, recall and precision side) `compute_cov` reports
  (with pruning these are over the draws fingerprinted: see `coverage_fingerprints`).
  Wasserstein distances between valid generated and held-out structures of density
  (g/cm^3), number of elements, and the property head's prediction (CDVAE: on 1,000
  random valid draws; here `n_valid_samples`, default 1,000 too; None: all valid draws).

Both receive the run (`betavae_core.RunContext`): the held-out split to evaluate on, the
training split, the seed. Batched passes go through `betavae_core.reconstruct` and
`decode`; the likelihood's mean decodes (most probable species per slot, mean
coordinates and lattice) to the most probable structure.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

import betavae_core as bv
from betavae_core import DataError, DomainData, EvaluationResult

from . import fingerprints, guidance, validity
from .latents import DEFAULT_COMPONENTS, latent_draws
from .representation import (
    COORD_COLS,
    Z_SCALE,
    CrystalRepresentation,
    protocol_matcher,
    single_blas_thread,
)

STRUCT_CUTOFF = 0.2
COMP_CUTOFF = 4.0


def checked_representation(model: Any, data: DomainData) -> CrystalRepresentation:
    """The crystal representation of `data`, refusing data the model cannot read."""
    rep = CrystalRepresentation.from_attrs(data.attrs)
    if tuple(data.event_shape) != tuple(model.config.event_shape):
        raise DataError(f"the data's crystal tensors have shape {data.event_shape}; the model "
                        f"takes {tuple(model.config.event_shape)}. Load it with -o like=RUN.")
    check = getattr(model.likelihood, "check_vocabulary", None)
    if check is not None and bool(model.likelihood.vocabulary.any()):
        check(torch.round(data.x[0, 0, COORD_COLS:] * Z_SCALE))
    return rep


def rms_distances(originals: list, decoded: list) -> list[float | None]:
    """StructureMatcher RMS distance of each decoded structure to its original under
    CDVAE's tolerances; None where they do not match or either is missing."""
    matcher = protocol_matcher()
    rms: list[float | None] = []
    for a, b in zip(originals, decoded, strict=True):
        r = None
        if a is not None and b is not None:
            try:
                r = matcher.get_rms_dist(a, b)
            except Exception:  # a degenerate decoded cell can make the matcher fail
                r = None
        rms.append(None if r is None else float(r[0]))
    return rms


def species_match(original: np.ndarray, decoded: np.ndarray) -> float:
    """Share of items whose decoded species (empty slots included) are the original's as
    a multiset: independent of site order, which the likelihood's site matching leaves
    free, so a decoded cell with its sites listed in another order still counts."""
    a, b = np.sort(np.asarray(original), axis=1), np.sort(np.asarray(decoded), axis=1)
    return float((a == b).all(axis=1).mean())


@single_blas_thread
def reconstruction(run: bv.RunContext) -> EvaluationResult:
    """Match rate and RMSE of held-out structures encoded and decoded, and the share
    whose species come back (`species_match`)."""
    model, data = run.model, run.heldout
    rep = checked_representation(model, data)
    items = bv.reconstruct(model, data, mean=True).mean
    rms = rms_distances(rep.decode(data.x), rep.decode(items))
    matched = [r for r in rms if r is not None]
    _, _, c0 = rep.split(data.x)
    _, _, c1 = rep.split(items)
    return EvaluationResult(metrics={
        "match_rate": len(matched) / len(rms),
        "rmse": float(np.mean(matched)) if matched else None,
        "species_match": species_match(c0, c1),
        "n_items": len(rms),
        "matcher": "StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)",
    })


def _composition_distances(gen_comp: np.ndarray, ref_comp: np.ndarray) -> np.ndarray:
    """Euclidean distances (n_gen, n_ref) between unscaled Magpie rows, after CDVAE's
    CompScaler: the compositional side of `compute_cov`."""
    return cdist(fingerprints.scale_composition(gen_comp),
                 fingerprints.scale_composition(ref_comp))


def coverage_items(gen_struct: np.ndarray, gen_comp: np.ndarray, ref_struct: np.ndarray,
                   ref_comp: np.ndarray, struct_cutoff: float = STRUCT_CUTOFF,
                   comp_cutoff: float = COMP_CUTOFF) -> dict[str, np.ndarray]:
    """Per-structure terms of CDVAE's `compute_cov`: for each generated row, its nearest
    structural / compositional distance to a held-out structure and whether both are
    within the cutoffs (`precision`; NaN / False for rows without a fingerprint); for
    each fingerprinted held-out row the same the other way round (`recall`)."""
    gen_struct, gen_comp = np.asarray(gen_struct, float), np.asarray(gen_comp, float)
    ref_struct, ref_comp = np.asarray(ref_struct, float), np.asarray(ref_comp, float)
    gen_ok, ref_ok = ~fingerprints.failed(gen_struct), ~fingerprints.failed(ref_struct)
    out = {"gen_ok": gen_ok, "ref_ok": ref_ok,
           "precision_s": np.full(len(gen_struct), np.nan),
           "precision_c": np.full(len(gen_struct), np.nan),
           "precision": np.zeros(len(gen_struct), dtype=bool),
           "recall_s": np.full(int(ref_ok.sum()), np.inf),
           "recall_c": np.full(int(ref_ok.sum()), np.inf),
           "recall": np.zeros(int(ref_ok.sum()), dtype=bool)}
    if not gen_ok.any() or not ref_ok.any():
        return out
    struct_d = cdist(gen_struct[gen_ok], ref_struct[ref_ok])
    comp_d = _composition_distances(gen_comp[gen_ok], ref_comp[ref_ok])
    out["recall_s"], out["recall_c"] = struct_d.min(axis=0), comp_d.min(axis=0)
    out["precision_s"][gen_ok] = struct_d.min(axis=1)
    out["precision_c"][gen_ok] = comp_d.min(axis=1)
    out["recall"] = (out["recall_s"] <= struct_cutoff) & (out["recall_c"] <= comp_cutoff)
    with np.errstate(invalid="ignore"):
        out["precision"] = ((out["precision_s"] <= struct_cutoff)
                            & (out["precision_c"] <= comp_cutoff))
    return out


def coverage(gen_struct: np.ndarray, gen_comp: np.ndarray, ref_struct: np.ndarray,
             ref_comp: np.ndarray, n_generated: int | None = None,
             struct_cutoff: float = STRUCT_CUTOFF, comp_cutoff: float = COMP_CUTOFF
             ) -> dict[str, Any]:
    """COV-R and COV-P as CDVAE's `compute_cov`, from `fingerprint_arrays` output
    (compositional fingerprints unscaled: CDVAE's fixed CompScaler is applied here).

    Rows that hold no fingerprint are left out on both sides; `n_generated` (default: the
    generated rows, fingerprinted or not) is COV-P's base, as CDVAE's `num_gen_crystals`."""
    items = coverage_items(gen_struct, gen_comp, ref_struct, ref_comp, struct_cutoff,
                           comp_cutoff)
    gen_ok = items["gen_ok"]
    n_generated = len(gen_ok) if n_generated is None else int(n_generated)
    counts = {"n_coverage_generated": n_generated,
              "n_coverage_fingerprinted": int(gen_ok.sum()),
              "n_reference_fingerprinted": int(items["ref_ok"].sum())}
    if not gen_ok.any() or not items["ref_ok"].any():
        means = dict.fromkeys(("amsd_recall", "amsd_precision", "amcd_recall",
                               "amcd_precision"))  # no pair of rows: no distance
        return {"cov_recall": 0.0, "cov_precision": 0.0, **means, **counts}
    return {"cov_recall": float(items["recall"].mean()),
            "cov_precision": float(items["precision"].sum() / max(n_generated, 1)),
            "amsd_recall": float(items["recall_s"].mean()),
            "amsd_precision": float(np.mean(items["precision_s"][gen_ok])),
            "amcd_recall": float(items["recall_c"].mean()),
            "amcd_precision": float(np.mean(items["precision_c"][gen_ok])),
            **counts}


def fingerprint_arrays(structures: list, workers: int | None = None,
                       only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(structural (n, 61), compositional (n, 132) unscaled) fingerprints, one row per
    structure (NaN rows where one cannot be computed or `only` leaves it out); see
    `fingerprints`."""
    return fingerprints.fingerprint_arrays(structures, workers=workers, only=only)


def within_composition_cutoff(gen_comp: np.ndarray, ref_comp: np.ndarray,
                              comp_cutoff: float = COMP_CUTOFF) -> np.ndarray:
    """Generated rows whose scaled compositional fingerprint lies within `comp_cutoff` of
    some held-out one: only these can count in COV-R or COV-P (both need both cutoffs)."""
    gen_comp, ref_comp = np.asarray(gen_comp, float), np.asarray(ref_comp, float)
    ok = ~np.isnan(gen_comp).all(axis=1)
    ref = ref_comp[~np.isnan(ref_comp).all(axis=1)]
    near = np.zeros(len(gen_comp), dtype=bool)
    if ok.any() and len(ref):
        near[ok] = _composition_distances(gen_comp[ok], ref).min(axis=1) <= comp_cutoff
    return near


def coverage_fingerprints(structures: list, ref_fp: tuple[np.ndarray, np.ndarray],
                          comp_cutoff: float = COMP_CUTOFF, workers: int | None = None,
                          prune: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of generated `structures` for `coverage` against `ref_fp`. With
    `prune`, CrystalNN runs only on draws within the compositional cutoff of a held-out
    structure (`within_composition_cutoff`; Magpie is cheap and computed once per
    formula): the others can count in neither COV-R nor COV-P, so both come out exactly
    as with every draw fingerprinted, in a fraction of the time. The pruned rows are
    NaN, like draws that cannot be fingerprinted: left out, still in COV-P's base. The
    mean nearest distances are not exact under pruning: the AMSD / AMCD precision means
    are over the draws within the cutoff, and the recall means (nearest draw to each
    held-out structure) are upper bounds, since a pruned draw may have been nearest;
    `n_coverage_fingerprinted` counts the draws fingerprinted. `prune=False` gives all
    four as CDVAE computes them."""
    if not prune:
        return fingerprint_arrays(structures, workers=workers)
    near = within_composition_cutoff(fingerprints.composition_arrays(structures),
                                     ref_fp[1], comp_cutoff)
    return fingerprint_arrays(structures, workers=workers, only=near)


def _subset(rng: np.random.Generator, indices: np.ndarray, size: int | None) -> np.ndarray:
    """A sorted random `size` of `indices` (all of them when size is None or larger)."""
    if size is None or len(indices) <= int(size):
        return indices
    return np.sort(rng.choice(indices, int(size), replace=False))


@single_blas_thread
def generation(run: bv.RunContext, n_samples: int = 1000, latent: str = "posterior",
               latent_components: int = DEFAULT_COMPONENTS, n_coverage: int | None = None,
               n_valid_samples: int | None = 1000, struct_cutoff: float = STRUCT_CUTOFF,
               comp_cutoff: float = COMP_CUTOFF, workers: int | None = None
               ) -> EvaluationResult:
    """Validity, coverage and property distances of generated vs held-out structures.

    Latent codes come from the mixture fitted to the training split's posterior means
    (`run.train`), as the generator draws them; when the run's training split is unknown
    (a bare `betavae_core.evaluate(model, data)`) they come from the prior, and
    `metrics["latent"]` says so. Coverage is on all draws (`n_coverage`: a random subset
    of that many draws, valid or not), property distances on a random `n_valid_samples`
    of the valid draws (1,000, as CDVAE; None: all of them). `workers` processes compute
    the fingerprints."""
    model, data = run.model, run.heldout
    rep = checked_representation(model, data)
    training = run.train if latent == "posterior" else None
    if training is not None:
        model.check_input(training)  # loaded again from its source: it may have changed
    means = None if training is None else bv.encode(model, training)[0]
    z, source = latent_draws(model, int(n_samples), latent, means, run.torch_generator(),
                             run.seed, latent_components)
    decoded = bv.decode(model, z, mean=True, sample=False, params=True, seed=run.seed)
    structures = rep.decode(decoded.mean)
    struct_ok = np.array([validity.structure_validity(s)[0] for s in structures])
    comp_ok = np.array([s is not None and validity.composition_validity(s.composition)[0]
                        for s in structures])
    rng = run.numpy_rng()
    valid = _subset(rng, np.nonzero(struct_ok & comp_ok)[0], n_valid_samples)
    drawn = _subset(rng, np.arange(len(structures)), n_coverage)
    reference = [s for s in rep.decode(data.x) if s is not None]
    gen_valid = [structures[i] for i in valid]
    t0 = time.perf_counter()
    ref_fp = fingerprint_arrays(reference, workers=workers)
    gen_fp = coverage_fingerprints([structures[i] for i in drawn], ref_fp, comp_cutoff,
                                   workers)
    fingerprint_s = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "n_samples": int(n_samples),
        "latent": source,
        "structural_validity": float(struct_ok.mean()),
        "compositional_validity": float(comp_ok.mean()),
        "validity": float((struct_ok & comp_ok).mean()),
        **coverage(*gen_fp, *ref_fp, n_generated=len(drawn), struct_cutoff=struct_cutoff,
                   comp_cutoff=comp_cutoff),
        "coverage_on": ("all draws" if len(drawn) == len(structures) else
                        f"a random {len(drawn)} of {len(structures)} draws"),
        "coverage_cutoffs": {"structural": struct_cutoff, "compositional": comp_cutoff},
        "coverage_fingerprints": "CDVAE: CrystalNNFingerprint ops (site mean), Magpie "
                                 "ElementProperty with CDVAE's CompScaler",
        "coverage_pruning": "CrystalNN only on draws within the compositional cutoff of "
                            "a held-out structure (exact for COV-R / COV-P)",
        "fingerprint_seconds": round(fingerprint_s, 1),
        "n_reference": len(reference),
        "n_valid_samples": len(gen_valid),
    }
    if gen_valid:
        metrics.update(_distances(model, data, gen_valid, reference,
                                  decoded.params[torch.as_tensor(valid)]))
    return EvaluationResult(metrics=metrics)


def _distances(model: Any, data: DomainData, generated: list, reference: list,
               params: torch.Tensor) -> dict[str, Any]:
    """Wasserstein distances of density, number of elements and (with a property head)
    the predicted property between valid draws and held-out structures."""
    out: dict[str, Any] = {
        "wdist_density": float(wasserstein_distance([s.density for s in generated],
                                                    [s.density for s in reference])),
        "wdist_num_elements": float(wasserstein_distance(
            [len(s.composition) for s in generated], [len(s.composition) for s in reference])),
    }
    predicted = guidance.predict(model, params, data.attrs)
    if predicted is not None:
        ref_params = bv.reconstruct(model, data, mean=False, params=True).params
        ref_pred = guidance.predict(model, ref_params, data.attrs)
        out["wdist_property"] = float(wasserstein_distance(predicted.numpy(), ref_pred.numpy()))
        out["property"] = data.attrs["property"]["name"]
    return out
