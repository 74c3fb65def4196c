"""Evaluations in the CDVAE protocol on a fitted model and held-out crystals.

* `crystal_reconstruction`: each held-out structure is encoded (posterior mean), decoded
  (most probable species, mean coordinates and lattice) and compared with the original
  by the protocol's StructureMatcher: match rate, and RMSE (the matcher's normalised
  RMS displacement) averaged over matched pairs.
* `crystal_generation`: `n_samples` latent draws decoded the same way (from the mixture
  over training encodings when training data are given, else from the prior). Validity
  (structural, compositional, both) over all draws; coverage COV-R (share of held-out
  structures with a generated one within both fingerprint cutoffs) and COV-P (share of
  all draws within both cutoffs of a held-out one) on the structural and compositional
  fingerprints of `fingerprints`, cutoffs 0.2 / 4 as for Perov-5 and Carbon-24;
  Wasserstein distances between valid generated and held-out structures of density
  (g/cm^3), number of elements, and the property head's prediction.
"""

from __future__ import annotations

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
             ref_comp: np.ndarray, n_generated: int, struct_cutoff: float = STRUCT_CUTOFF,
             comp_cutoff: float = COMP_CUTOFF) -> dict[str, float]:
    """COV-R and COV-P; compositional fingerprints are standardised with the reference
    set's statistics. `n_generated` counts every draw, valid or not (COV-P's base)."""
    if len(gen_struct) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    mean, std = ref_comp.mean(axis=0), ref_comp.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    comp_d = cdist((gen_comp - mean) / std, (ref_comp - mean) / std)
    struct_d = cdist(gen_struct, ref_struct)
    recall = (struct_d.min(axis=0) <= struct_cutoff) & (comp_d.min(axis=0) <= comp_cutoff)
    precision = (struct_d.min(axis=1) <= struct_cutoff) & (comp_d.min(axis=1) <= comp_cutoff)
    return {"cov_recall": float(recall.mean()),
            "cov_precision": float(precision.sum() / n_generated)}


def fingerprint_arrays(structures: list) -> tuple[np.ndarray, np.ndarray]:
    """(structural, compositional) fingerprints, one row per structure."""
    struct = np.stack([fingerprints.structure_fingerprint(s) for s in structures])
    comp = np.stack([fingerprints.composition_fingerprint(s.composition) for s in structures])
    return struct, comp


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
               n_coverage: int | None = None, training: DomainData | None = None
               ) -> EvaluationResult:
    """Validity, coverage and property distances of generated vs held-out structures.

    Latent codes come from the mixture fitted to the training structures' posterior
    means, as the generator draws them. `betavae evaluate` passes only the held-out
    split: the training structures are then the run's data loaded again minus the
    held-out ones (by name); when that is impossible, the codes come from the prior."""
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
    if n_coverage is not None and len(valid) > n_coverage:
        valid = np.sort(rng.choice(valid, int(n_coverage), replace=False))
    reference = [s for s in rep.decode(data.x) if s is not None]
    gen_valid = [structures[i] for i in valid]
    gen_fp = fingerprint_arrays(gen_valid) if gen_valid else (np.zeros((0, 1)), np.zeros((0, 1)))
    ref_fp = fingerprint_arrays(reference)
    metrics: dict[str, Any] = {
        "n_samples": int(n_samples),
        "latent": source,
        "structural_validity": float(struct_ok.mean()),
        "compositional_validity": float(comp_ok.mean()),
        "validity": float((struct_ok & comp_ok).mean()),
        **coverage(*gen_fp, *ref_fp, n_generated=len(structures) if n_coverage is None
                   else min(len(structures), int(n_coverage))),
        "coverage_cutoffs": {"structural": STRUCT_CUTOFF, "compositional": COMP_CUTOFF},
        "n_reference": len(reference),
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
