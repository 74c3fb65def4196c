"""The `crystals` generator: latent draws -> decoded tensors -> structures -> validity ->
uniqueness -> novelty -> (relaxation), written as CIF files, `candidates.csv` and
`report.json`.

Latent codes come by default from a Gaussian mixture fitted to the training structures'
posterior means (`latent=posterior`; see `latents`), which replaces the core's prior
draws; `latent=prior` keeps them. Decoding (default `decode=mode`) takes the most
probable species of each slot, the mean direction of each coordinate's von Mises and the
lattice mean; `decode=sample` draws them instead. With a target (`target=VALUE`,
`target=NAME=VALUE` or `target_NAME=VALUE`) the draws are first moved toward it in
latent space (see `guidance`). Accepted candidates are structurally and compositionally
valid, unique among the generated set and novel against the training set; each gets
`<id>.cif` (and `<id>_relaxed.cif` when relaxed).
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from betavae_core.checkpoint import write_json, write_text
from betavae_core.data import DomainData
from betavae_core.errors import ConfigError, DataError, OutputExistsError
from betavae_core.results import CandidateReport, GeneratedSamples

from . import guidance, matching, validity
from .crystal_data import from_structures
from .latents import latent_draws
from .relax import CALCULATORS, relax_all
from .representation import CrystalRepresentation, single_blas_thread

KEEP = ("novel", "unique", "valid")
DECODE = ("mode", "sample")
OPTIONS = ("latent", "latent_components", "relax", "relax_steps", "fmax", "target",
           "target_steps", "target_lr", "prior_weight", "training", "decode", "keep",
           "symprec", "seed")


class Stopwatch:
    """Seconds per named stage and how many candidates each stage handled."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str, handled: int) -> None:
        now = time.perf_counter()
        seconds = now - self._t
        self._t = now
        self.stages[stage] = {"seconds": round(seconds, 4), "candidates": int(handled),
                              "per_second": round(handled / seconds, 1) if seconds > 0 else None}


# --- options ---------------------------------------------------------------------------
def parse_target(target: Any, extra: dict[str, Any], prop: dict[str, Any] | None
                 ) -> float | None:
    """The target value from `target=VALUE`, `target=NAME=VALUE` or `target_NAME=VALUE`."""
    named = {k[len("target_"):]: v for k, v in extra.items() if k.startswith("target_")}
    unknown = [k for k in extra if not k.startswith("target_")]
    if unknown:
        raise ConfigError(f"the crystals generator has no option(s) {sorted(unknown)}; its "
                          f"options are {', '.join(OPTIONS)} (and target_NAME=VALUE).")
    if target is not None and named:
        raise ConfigError("give the target once: target=VALUE or target_NAME=VALUE.")
    name = None
    if named:
        if len(named) > 1:
            raise ConfigError(f"one target at a time; got {sorted(named)}.")
        name, target = next(iter(named.items()))
    elif isinstance(target, str) and "=" in target:
        name, _, target = target.partition("=")
    if target is None:
        return None
    if prop is None:
        raise ConfigError("this model learned no property, so it cannot generate toward a "
                          "target; train on data with a property column.")
    if name is not None and name.strip() not in (prop["name"], prop["column"]):
        raise ConfigError(f"this model predicts {prop['name']!r} (column {prop['column']!r}); "
                          f"it cannot target {name.strip()!r}.")
    try:
        return float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target must be a number; got {target!r}.") from None


def training_reference(training: Any, attrs: dict[str, Any]) -> DomainData | None:
    """The training data for novelty: given (DomainData, structures, path) or reloaded
    from the run's recorded source; None when switched off (`training=none`)."""
    from .loaders import reload

    if isinstance(training, DomainData):
        return training
    if isinstance(training, str) and training.lower() == "none":
        return None
    if isinstance(training, (str, Path)):
        return _load_like(Path(training), attrs)
    if training is not None:
        return from_structures(list(training), like=attrs, strict=False)
    return reload(attrs.get("source", {}), attrs)


def _load_like(path: Path, attrs: dict[str, Any]) -> DomainData:
    from .loaders import claims_ase_db, claims_csv, load_ase_db, load_csv, load_structures

    if not path.exists():
        raise DataError(f"training={path}: no such file or folder.")
    loader = (load_csv if claims_csv(path) else load_ase_db if claims_ase_db(path)
              else load_structures)
    return loader(path, like=attrs)


# --- the funnel ------------------------------------------------------------------------
def decode_items(samples: GeneratedSamples, params: torch.Tensor, how: str, seed: int
                 ) -> torch.Tensor:
    model = samples.model
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dist = model.likelihood.distribution(params.to(model.device))
        return (dist.mode() if how == "mode" else dist.sample()).cpu()


def decoder_params(model: Any, z: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.decoder(z[i:i + batch_size].to(model.device), None, None).cpu()
                          for i in range(0, len(z), batch_size)])


def space_group(structure: Structure, symprec: float) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spglib's deprecation notes, per call
            sga = SpacegroupAnalyzer(structure, symprec=symprec)
            return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:
        return ""


def nearest_training(model: Any, reference: DomainData, z: torch.Tensor
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and latent distance to, the nearest training structure (posterior
    means) for each latent code."""
    from scipy.spatial import cKDTree

    from betavae_core.posterior import encode

    mu, _ = encode(model, reference)
    dist, idx = cKDTree(mu).query(z.double().numpy(), k=1)
    return np.asarray(idx), np.asarray(dist)


@single_blas_thread
def generate_crystals(samples: GeneratedSamples, out_dir: Path, relax: str | None = None,
                      relax_steps: int = 200, fmax: float = 0.05, target: Any = None,
                      target_steps: int = 200, target_lr: float = 0.05,
                      prior_weight: float = 1.0, training: Any = None, decode: str = "mode",
                      keep: str = "novel", symprec: float = 0.1, seed: int = 0,
                      latent: str = "posterior", latent_components: int = 50,
                      **extra: Any) -> CandidateReport:
    """Turn latent draws into accepted candidate crystals with a funnel report."""
    out_dir = Path(out_dir)
    attrs, model = samples.attrs, samples.model
    rep = CrystalRepresentation.from_attrs(attrs)
    prop = guidance.property_info(attrs)
    goal = parse_target(target, extra, prop)
    if relax is not None and str(relax).lower() in ("none", "false", ""):
        relax = None
    if relax is not None and str(relax).lower() not in CALCULATORS:
        raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {relax!r}.")
    if decode not in DECODE:
        raise ConfigError(f"decode must be one of {DECODE}; got {decode!r}.")
    if keep not in KEEP:
        raise ConfigError(f"keep must be one of {KEEP}; got {keep!r}.")
    if any(out_dir.glob("*.cif")) or (out_dir / "candidates.csv").exists():
        raise OutputExistsError(f"{out_dir} already holds candidates; they are never "
                                f"overwritten. Choose a new --out.")
    clock = Stopwatch()
    n = len(samples.z)
    z = samples.z
    params = samples.params
    reference = training_reference(training, attrs)
    clock.lap("load_training", 0 if reference is None else len(reference))
    drawn, latent_source = latent_draws(model, n, latent, reference, seed, latent_components)
    if drawn is not None:
        z = drawn
        params = decoder_params(model, z)
        clock.lap("latent_draws", n)
    if goal is not None:
        z = guidance.optimise_latents(model, z, goal, attrs, target_steps, target_lr,
                                      prior_weight).cpu()
        params = decoder_params(model, z)
        clock.lap("latent_optimisation", n)
    items = decode_items(samples, params, decode, seed)
    structures = rep.decode(items)
    predicted = guidance.predict(model, params, attrs)
    clock.lap("decode", n)

    struct_ok, struct_why = zip(*(validity.structure_validity(s) for s in structures),
                                strict=True)
    clock.lap("structural_validity", n)
    comp_ok, comp_why = zip(*((validity.composition_validity(s.composition) if s is not None
                               else (False, "no atoms")) for s in structures), strict=True)
    clock.lap("compositional_validity", n)
    valid = [i for i in range(n) if struct_ok[i] and comp_ok[i]]
    keys = matching.tensor_keys(*rep.split(items))
    first_of = matching.deduplicate(structures, valid, keys)
    unique = [i for i in valid if first_of[i] == i]
    clock.lap("deduplication", len(valid))

    matched: dict[int, str | None] = {}
    near_idx = near_dist = None
    if reference is not None:
        ref_rep = CrystalRepresentation.from_attrs(reference.attrs)
        ref_structures = ref_rep.decode(reference.x)
        names = [str(v) for v in reference.metadata.get("name", range(len(reference)))]
        train_set = matching.TrainingSet.build(ref_structures, names)
        matched = {i: train_set.match(structures[i]) for i in unique}
        near_idx, near_dist = nearest_training(model, reference, z)
        clock.lap("novelty", len(unique))
    novel = [i for i in unique if reference is None or matched[i] is None]
    accepted = {"novel": novel, "unique": unique, "valid": valid}[keep]

    relaxations: dict[int, Any] = {}
    if relax is not None:
        results = relax_all([structures[i] for i in accepted], str(relax).lower(), fmax,
                            int(relax_steps))
        relaxations = dict(zip(accepted, results, strict=True))
        clock.lap("relaxation", len(accepted))

    width = max(5, len(str(n - 1)))
    ids = [f"cand_{i:0{width}d}" for i in range(n)]
    files = _write_cifs(out_dir, ids, structures, accepted, relaxations)
    sg = {i: space_group(structures[i], symprec) for i in accepted}
    clock.lap("write", len(accepted))
    rows = _rows(ids, structures, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
                 near_idx, near_dist, reference, predicted, prop, relaxations, sg, set(accepted),
                 reference is not None)
    write_text(out_dir / "candidates.csv", _csv(rows))
    files.append("candidates.csv")
    summary = _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations,
                       reference, predicted, prop, goal, clock, keep, decode, relax)
    summary["latent"] = latent_source
    summary["options"] = {"latent": latent, "latent_components": latent_components,
                          "relax": relax, "relax_steps": relax_steps, "fmax": fmax,
                          "target": goal, "target_steps": target_steps, "target_lr": target_lr,
                          "prior_weight": prior_weight, "decode": decode, "keep": keep,
                          "symprec": symprec}
    write_json(out_dir / "report.json", summary)
    files.append("report.json")
    objects = {ids[i]: structures[i] for i in accepted}
    return CandidateReport(objects=objects, summary=summary, files=files)


def _write_cifs(out_dir: Path, ids: Sequence[str], structures: Sequence[Structure | None],
                accepted: Sequence[int], relaxations: dict[int, Any]) -> list[str]:
    from pymatgen.io.cif import CifWriter

    files = []
    for i in accepted:
        write_text(out_dir / f"{ids[i]}.cif", str(CifWriter(structures[i])))
        files.append(f"{ids[i]}.cif")
        relaxed = relaxations.get(i)
        if relaxed is not None and relaxed.structure is not None:
            write_text(out_dir / f"{ids[i]}_relaxed.cif", str(CifWriter(relaxed.structure)))
            files.append(f"{ids[i]}_relaxed.cif")
    return files


def _rows(ids, structures, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
          near_idx, near_dist, reference, predicted, prop, relaxations, sg, accepted,
          checked_novelty) -> list[dict[str, Any]]:
    names = (reference.metadata.get("name") if reference is not None else None)
    prop_col = f"predicted_{prop['name']}" if prop else None
    rows = []
    for i, s in enumerate(structures):
        row: dict[str, Any] = {
            "id": ids[i],
            "formula": s.composition.reduced_formula if s is not None else "",
            "space_group": sg.get(i, ""),
            "n_sites": len(s) if s is not None else 0,
            "density": round(float(s.density), 4) if s is not None and struct_ok[i] else "",
            "structurally_valid": bool(struct_ok[i]),
            "structure_problem": struct_why[i],
            "compositionally_valid": bool(comp_ok[i]),
            "composition_problem": comp_why[i] if not comp_ok[i] else "",
            "unique": i in first_of and first_of[i] == i,
            "duplicate_of": ids[first_of[i]] if i in first_of and first_of[i] != i else "",
            "novel": (i in matched and matched[i] is None) if checked_novelty else "",
            "matches_training": (matched.get(i) or "") if checked_novelty else "",
            "nearest_training": (str(names[int(near_idx[i])]) if names is not None
                                 and near_idx is not None else ""),
            "nearest_latent_distance": (round(float(near_dist[i]), 4) if near_dist is not None
                                        else ""),
        }
        if prop_col:
            row[prop_col] = round(float(predicted[i]), 4) if predicted is not None else ""
        if relaxations:
            r = relaxations.get(i)
            row["relax_status"] = r.status if r else ""
            row["relax_problem"] = r.reason if r else ""
            row["energy_per_atom"] = (round(r.energy_per_atom, 5) if r and r.energy_per_atom
                                      is not None else "")
        row["accepted"] = i in accepted
        row["cif"] = f"{ids[i]}.cif" if i in accepted else ""
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations, reference,
             predicted, prop, goal, clock, keep, decode, relax) -> dict[str, Any]:
    n_struct = int(sum(struct_ok))
    n_comp_after = sum(1 for i in range(n) if struct_ok[i] and comp_ok[i])
    funnel: dict[str, Any] = {
        "sampled": n,
        "structurally_valid": n_struct,
        "compositionally_valid": n_comp_after,
        "unique": len(unique),
        "novel": len(novel) if reference is not None else None,
    }
    if relax is not None:
        statuses = [r.status for r in relaxations.values()]
        funnel["relaxed"] = statuses.count("converged")
    summary: dict[str, Any] = {
        "funnel": funnel,
        "rates": {
            "structural_validity": _rate(n_struct, n),
            "compositional_validity": _rate(int(sum(comp_ok)), n),
            "validity": _rate(len(valid), n),
            "uniqueness_of_valid": _rate(len(unique), len(valid)),
            "novelty_of_unique": (_rate(len(novel), len(unique)) if reference is not None
                                  else None),
        },
        "accepted": len(accepted),
        "accepted_means": f"{keep} (valid{', unique' if keep != 'valid' else ''}"
                          f"{', novel' if keep == 'novel' else ''})",
        "novelty_reference": (f"{len(reference)} training structures" if reference is not None
                              else "not checked (training=none)"),
        "decode": decode,
        "stages": clock.stages,
    }
    if relax is not None:
        statuses = [r.status for r in relaxations.values()]
        summary["relaxation"] = {"calculator": relax, **{s: statuses.count(s) for s in
                                 ("converged", "not_converged", "skipped", "failed")}}
        energies = [r.energy_per_atom for r in relaxations.values()
                    if r.energy_per_atom is not None]
        if energies:
            summary["relaxation"]["energy_per_atom_mean"] = float(np.mean(energies))
    if prop is not None and predicted is not None:
        acc = predicted[list(accepted)].numpy() if accepted else np.array([])
        summary["property"] = {
            "name": prop["name"], "unit": prop["unit"], "target": goal,
            "training_mean": prop["mean"], "training_std": prop["std"],
            "predicted_mean_all": float(predicted.mean()),
            "predicted_mean_accepted": float(acc.mean()) if len(acc) else None,
            "predicted_std_accepted": float(acc.std()) if len(acc) else None,
        }
    return summary
