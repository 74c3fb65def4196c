"""Evaluations in the CDVAE protocol on a fitted model and held-out crystals.

* `crystal_reconstruction`: each held-out structure is encoded (posterior mean), decoded
  (most probable species, mean coordinates and lattice) and compared with the original
  by the protocol's StructureMatcher: match rate, and RMSE (the matcher's normalised
  RMS displacement) averaged over matched pairs.
* `crystal_generation`: `n_samples` latent draws decoded the same way (from the mixture
  over training encodings when training data are given, else from the prior). Validity
  (structural, compositional, both) over all draws. Coverage as CDVAE's `compute_cov`:
  on CDVAE's fingerprints (`fingerprints`: CrystalNN "ops" averaged over sites; Magpie
  scaled by CDVAE's fixed CompScaler), Euclidean distances, COV-R = share of held-out
  structures with a generated one within both cutoffs, COV-P = generated structures
  within both cutoffs of a held-out one, divided by the number of draws. As in CDVAE, the
  generated side is every draw, valid or not (CDVAE's `GenEval.get_coverage` passes all
  crystals); draws that cannot be fingerprinted are left out but still count in COV-P's
  base. `n_coverage` takes a random subset of the draws instead of all (CrystalNN is
  slow); fewer draws can only lower COV-R. Cutoffs: structural 0.2, compositional 4,
  CDVAE's for Perov-5 and Carbon-24 (its `COV_Cutoffs`; MP-20 uses 0.4 / 10). Also the
  mean nearest distances (AMSD / AMCD, recall and precision side) `compute_cov` reports.
  Wasserstein distances between valid generated and held-out structures of density
  (g/cm^3), number of elements, and the property head's prediction (CDVAE: on 1,000
  random valid draws; here `n_valid_samples`, default all valid draws).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from betavae_core.data import DomainData
from betavae_core.errors import DataError
from betavae_core.posterior import batches
from betavae_core.results import EvaluationResult

from . import fingerprints, guidance, validity
from .latents import latent_draws
from .representation import (
    COORD_COLS,
    Z_SCALE,
    CrystalRepresentation,
    protocol_matcher,
    single_blas_thread,
)

STRUCT_CUTOFF = 0.2
COMP_CUTOFF = 4.0


def _checked_representation(model: Any, data: DomainData) -> CrystalRepresentation:
    rep = CrystalRepresentation.from_attrs(data.attrs)
    if tuple(data.event_shape) != tuple(model.config.event_shape):
        raise DataError(f"the data's crystal tensors have shape {data.event_shape}; the model "
                        f"takes {tuple(model.config.event_shape)}. Load it with -o like=RUN.")
    check = getattr(model.likelihood, "check_vocabulary", None)
    if check is not None and bool(model.likelihood.vocabulary.any()):
        check(torch.round(data.x[0, 0, COORD_COLS:] * Z_SCALE))
    return rep


@torch.no_grad()
def decode_latents(model: Any, z: torch.Tensor, batch_size: int = 4096
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(decodable items, raw decoder output) for latent codes."""
    items, params = [], []
    for sl in batches(len(z), batch_size):
        out = model.decoder(z[sl].to(model.device), None, None)
        items.append(model.likelihood.distribution(out).mode().cpu())
        params.append(out.cpu())
    return torch.cat(items), torch.cat(params)


@torch.no_grad()
def posterior_means(model: Any, data: DomainData, batch_size: int = 4096) -> torch.Tensor:
    return torch.cat([model.encode(data.x[sl].to(model.device), None).mu.cpu()
                      for sl in batches(len(data), batch_size)])


@single_blas_thread
def reconstruction(model: Any, data: DomainData) -> EvaluationResult:
    """Match rate and RMSE of held-out structures encoded and decoded."""
    rep = _checked_representation(model, data)
    items, _ = decode_latents(model, posterior_means(model, data))
    originals, decoded = rep.decode(data.x), rep.decode(items)
    matcher = protocol_matcher()
    rms = []
    for a, b in zip(originals, decoded, strict=True):
        r = None
        if a is not None and b is not None:
            try:
                r = matcher.get_rms_dist(a, b)
            except Exception:
                r = None
        rms.append(None if r is None else float(r[0]))
    matched = [r for r in rms if r is not None]
    _, _, c0 = rep.split(data.x)
    _, _, c1 = rep.split(items)
    return EvaluationResult(metrics={
        "match_rate": len(matched) / len(rms),
        "rmse": float(np.mean(matched)) if matched else None,
        "species_exact": float((c0 == c1).all(axis=1).mean()),
        "n_items": len(rms),
        "matcher": "StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)",
    })


def coverage(gen_struct: np.ndarray, gen_comp: np.ndarray, ref_struct: np.ndarray,
             ref_comp: np.ndarray, n_generated: int | None = None,
             struct_cutoff: float = STRUCT_CUTOFF, comp_cutoff: float = COMP_CUTOFF
             ) -> dict[str, Any]:
    """COV-R and COV-P as CDVAE's `compute_cov`, from `fingerprint_arrays` output
    (compositional fingerprints unscaled: CDVAE's fixed CompScaler is applied here).

    Rows that hold no fingerprint are left out on both sides; `n_generated` (default: the
    generated rows, fingerprinted or not) is COV-P's base, as CDVAE's `num_gen_crystals`."""
    gen_struct, gen_comp = np.asarray(gen_struct, float), np.asarray(gen_comp, float)
    ref_struct, ref_comp = np.asarray(ref_struct, float), np.asarray(ref_comp, float)
    n_generated = len(gen_struct) if n_generated is None else int(n_generated)
    gen_ok, ref_ok = ~fingerprints.failed(gen_struct), ~fingerprints.failed(ref_struct)
    counts = {"n_coverage_generated": n_generated,
              "n_coverage_fingerprinted": int(gen_ok.sum()),
              "n_reference_fingerprinted": int(ref_ok.sum())}
    if not gen_ok.any() or not ref_ok.any():
        return {"cov_recall": 0.0, "cov_precision": 0.0, **counts}
    struct_d = cdist(gen_struct[gen_ok], ref_struct[ref_ok])
    comp_d = cdist(fingerprints.scale_composition(gen_comp[gen_ok]),
                   fingerprints.scale_composition(ref_comp[ref_ok]))
    recall_s, recall_c = struct_d.min(axis=0), comp_d.min(axis=0)
    precision_s, precision_c = struct_d.min(axis=1), comp_d.min(axis=1)
    recall = (recall_s <= struct_cutoff) & (recall_c <= comp_cutoff)
    precision = (precision_s <= struct_cutoff) & (precision_c <= comp_cutoff)
    return {"cov_recall": float(recall.mean()),
            "cov_precision": float(precision.sum() / max(n_generated, 1)),
            "amsd_recall": float(recall_s.mean()), "amsd_precision": float(precision_s.mean()),
            "amcd_recall": float(recall_c.mean()), "amcd_precision": float(precision_c.mean()),
            **counts}


def fingerprint_arrays(structures: list, workers: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(structural (n, 61), compositional (n, 132) unscaled) fingerprints, one row per
    structure (NaN rows where one cannot be computed); see `fingerprints`."""
    return fingerprints.fingerprint_arrays(structures, workers=workers)


def _training_besides(heldout: DomainData) -> DomainData | None:
    """The run's data loaded again from its recorded source, without the held-out items."""
    import warnings

    from .loaders import reload

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = reload(heldout.attrs.get("source", {}), heldout.attrs)
    except Exception:
        return None
    held = set(map(str, heldout.metadata.get("name", [])))
    keep = [i for i, name in enumerate(full.metadata.get("name", [])) if str(name) not in held]
    return full.subset(keep) if keep else None


@single_blas_thread
def generation(model: Any, data: DomainData, n_samples: int = 1000, seed: int = 0,
               n_coverage: int | None = None, training: DomainData | None = None,
               n_valid_samples: int | None = None, struct_cutoff: float = STRUCT_CUTOFF,
               comp_cutoff: float = COMP_CUTOFF, workers: int | None = None
               ) -> EvaluationResult:
    """Validity, coverage and property distances of generated vs held-out structures.

    Latent codes come from the mixture fitted to the training structures' posterior
    means, as the generator draws them. `betavae evaluate` passes only the held-out
    split: the training structures are then the run's data loaded again minus the
    held-out ones (by name); when that is impossible, the codes come from the prior.
    Coverage is on all draws (`n_coverage`: a random subset of that many draws, valid or
    not), property distances on all valid draws (`n_valid_samples`: a random subset of
    the valid ones; CDVAE uses 1,000). `workers` processes compute the fingerprints."""
    rep = _checked_representation(model, data)
    if training is None:
        training = _training_besides(data)
    z, source = latent_draws(model, int(n_samples), "posterior", training, seed)
    if z is None:
        z = model.sample_prior(int(n_samples), generator=torch.Generator().manual_seed(seed))
    z = z.cpu()
    items, params = decode_latents(model, z)
    structures = rep.decode(items)
    struct_ok = np.array([validity.structure_validity(s)[0] for s in structures])
    comp_ok = np.array([s is not None and validity.composition_validity(s.composition)[0]
                        for s in structures])
    valid = np.nonzero(struct_ok & comp_ok)[0]
    rng = np.random.default_rng(seed)
    if n_valid_samples is not None and len(valid) > n_valid_samples:
        valid = np.sort(rng.choice(valid, int(n_valid_samples), replace=False))
    drawn = np.arange(len(structures))
    if n_coverage is not None and len(drawn) > n_coverage:
        drawn = np.sort(rng.choice(drawn, int(n_coverage), replace=False))
    reference = [s for s in rep.decode(data.x) if s is not None]
    gen_valid = [structures[i] for i in valid]
    t0 = time.perf_counter()
    gen_fp = fingerprint_arrays([structures[i] for i in drawn], workers=workers)
    ref_fp = fingerprint_arrays(reference, workers=workers)
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
        "fingerprint_seconds": round(fingerprint_s, 1),
        "n_reference": len(reference),
        "n_valid_samples": len(gen_valid),
    }
    if gen_valid:
        metrics["wdist_density"] = float(wasserstein_distance(
            [s.density for s in gen_valid], [s.density for s in reference]))
        metrics["wdist_num_elements"] = float(wasserstein_distance(
            [len(s.composition) for s in gen_valid], [len(s.composition) for s in reference]))
        predicted = guidance.predict(model, params[valid], data.attrs)
        if predicted is not None:
            _, ref_params = decode_latents(model, posterior_means(model, data))
            ref_pred = guidance.predict(model, ref_params, data.attrs)
            metrics["wdist_property"] = float(wasserstein_distance(predicted.numpy(),
                                                                   ref_pred.numpy()))
            metrics["property"] = data.attrs["property"]["name"]
    return EvaluationResult(metrics=metrics)
