"""The `crystals` generator: latent draws -> decoded tensors -> structures -> validity ->
uniqueness -> novelty -> (relaxation), written as CIF files, `candidates.csv` and
`report.json`.

The record asks the core for no samples (`samples="none"`): the generator draws its own
latent codes, by default from a Gaussian mixture fitted to the training structures'
posterior means (`latent=posterior`; see `latents`), or from the prior
(`latent=prior`), seeded from the run. With a target (`target=VALUE` or
`target=NAME=VALUE`) the draws are first moved toward it in latent space (see
`guidance`). The codes are decoded once, with `betavae_core.decode`: by default
(`decode=mode`) the likelihood's mean, which decodes to the most probable species of
each slot, the mean direction of each coordinate's von Mises and the lattice mean;
`decode=sample` draws them instead. Accepted candidates are structurally and
compositionally valid, unique among the generated set and novel against the run's
training split (`run.train`; `training=PATH` names another reference, `training=none`
switches novelty off); each gets `<id>.cif` (and `<id>_relaxed.cif` when relaxed).

With `relax=chgnet` (or `emt`) the accepted candidates are relaxed (`workers=N`
processes) and each gets a formation energy and an energy above the convex hull built
with the same potential (see `hull`; `reference=PATH` adds the user's structures); the
funnel goes on relaxed -> stable (<= 0.1 eV/atom) -> on or below the hull, the report
gives the S.U.N. rate, and `e_above_hull.png` shows the distribution.
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

import betavae_core as bv
from betavae_core import CandidateReport, ConfigError, DataError, DomainData, OutputExistsError

from . import guidance, hull, matching, validity
from .latents import DEFAULT_COMPONENTS, latent_draws
from .loaders import load_like
from .relax import CALCULATORS, make_potential, relax_all
from .representation import CrystalRepresentation, single_blas_thread

KEEP = ("novel", "unique", "valid")
DECODE = ("mode", "sample")


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
def parse_target(target: Any, prop: dict[str, Any] | None) -> float | None:
    """The target value from `target=VALUE` or `target=NAME=VALUE` (None: no target)."""
    name = None
    if isinstance(target, str) and "=" in target:
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


def parse_workers(workers: Any) -> int:
    """How many processes relax candidates (default 1: this one)."""
    if workers is None:
        return 1
    try:
        value = int(workers)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(workers).strip() != str(value):
        raise ConfigError(f"workers must be a whole number >= 1; got {workers!r}.")
    return value


def parse_relax(relax: Any) -> str | None:
    """The relaxation calculator's name, or None for no relaxation."""
    if relax is None or str(relax).lower() in ("none", "false", ""):
        return None
    if str(relax).lower() not in CALCULATORS:
        raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {relax!r}.")
    return str(relax).lower()


def training_reference(run: bv.RunContext, training: Any, attrs: dict[str, Any]
                       ) -> tuple[DomainData | None, str]:
    """(the structures novelty is checked against, what they are): the run's training
    split by default, the structures at `training=PATH`, or none (`training=none`, or
    when the run's training split is unknown: the report then says so)."""
    if training is not None and str(training).lower() == "none":
        return None, "not checked (training=none)"
    if training is not None:
        reference = load_like(Path(str(training)), attrs)
        return reference, f"{len(reference)} structures from {training}" + _skipped_note(
            reference.attrs.get("skipped") or {})
    reference = run.train
    if reference is None:
        return None, ("not checked: the run's training split is unknown (pass -g "
                      "training=PATH, or training=none)")
    if reference.attrs.get("representation") != attrs.get("representation"):
        raise DataError("the run's training data no longer encodes as it did at the fit (its "
                        "species or sizes changed); pass -g training=PATH to check novelty "
                        "against it, or training=none.")
    return reference, f"{len(reference)} structures of the run's training split"


def _skipped_note(skipped: dict[str, Any]) -> str:
    """What the reference set left out (species the model has not seen, too many sites,
    files that do not parse), for the report: the same skips, named, as at a fit."""
    if not skipped.get("count"):
        return ""
    shown = "; ".join(skipped.get("first", [])[:3])
    return (f" ({skipped['count']} skipped, which no candidate can match: {shown}"
            f"{' ...' if skipped['count'] > 3 else ''})")


# --- the funnel ------------------------------------------------------------------------
def space_group(structure: Structure, symprec: float) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spglib's deprecation notes, per call
            sga = SpacegroupAnalyzer(structure, symprec=symprec)
            return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:  # spglib fails on degenerate cells: no space group to report
        return ""


def nearest_training(means: np.ndarray, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and latent distance to, the nearest training structure (by its
    posterior mean) for each latent code."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(means).query(z.double().numpy(), k=1)
    return np.asarray(idx), np.asarray(dist)


@single_blas_thread
def generate_crystals(run: bv.RunContext, samples: bv.GeneratedSamples, *,
                      latent: str = "posterior", latent_components: int = DEFAULT_COMPONENTS,
                      decode: str = "mode", keep: str = "novel", training: Any = None,
                      target: Any = None, target_steps: int = 200, target_lr: float = 0.05,
                      prior_weight: float = 1.0, relax: str | None = None,
                      relax_steps: int = 200, fmax: float = 0.05, symprec: float = 0.1,
                      workers: Any = None, reference: Any = None) -> CandidateReport:
    """Draw `samples.n` latent codes, decode them into candidate crystals and write the
    accepted ones into `run.out_dir` with a funnel report."""
    if run.out_dir is None:
        raise ConfigError("the crystals generator needs run.out_dir, the folder to write into.")
    out_dir = Path(run.out_dir)
    attrs, model, n = run.attrs, run.model, int(samples.n)
    hull_reference = reference  # the user's hull references; `reference` below: training
    rep = CrystalRepresentation.from_attrs(attrs)
    prop = guidance.property_info(attrs)
    goal = parse_target(target, prop)
    relax = parse_relax(relax)
    workers = parse_workers(workers)
    user_references = ([] if hull_reference is None or relax is None
                       else hull.read_reference(hull_reference))  # before any work
    if decode not in DECODE:
        raise ConfigError(f"decode must be one of {DECODE}; got {decode!r}.")
    if keep not in KEEP:
        raise ConfigError(f"keep must be one of {KEEP}; got {keep!r}.")
    if any(out_dir.glob("*.cif")) or (out_dir / "candidates.csv").exists():
        raise OutputExistsError(f"{out_dir} already holds candidates; they are never "
                                f"overwritten. Choose a new --out.")
    clock = Stopwatch()
    reference, reference_note = training_reference(run, training, attrs)
    if reference is not None:
        model.check_input(reference)  # the fit's checks: shape, vocabulary, support
    clock.lap("load_training", 0 if reference is None else len(reference))
    means = None if reference is None else bv.encode(model, reference)[0]
    z, latent_source = latent_draws(model, n, latent, means, run.torch_generator(), run.seed,
                                    latent_components)
    clock.lap("latent_draws", n)
    if goal is not None:
        z = guidance.optimise_latents(model, z, goal, attrs, target_steps, target_lr,
                                      prior_weight).cpu()
        clock.lap("latent_optimisation", n)
    decoded = bv.decode(model, z, mean=decode == "mode", sample=decode == "sample",
                        params=True, seed=run.seed)
    items = decoded.mean if decode == "mode" else decoded.sample
    structures = rep.decode(items)
    predicted = guidance.predict(model, decoded.params, attrs)
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
    training_items: list[tuple[str, Structure]] = []
    if reference is not None:
        ref_rep = CrystalRepresentation.from_attrs(reference.attrs)
        ref_structures = ref_rep.decode(reference.x)
        names = [str(v) for v in reference.metadata.get("name", range(len(reference)))]
        training_items = list(zip(names, ref_structures, strict=True))
        train_set = matching.TrainingSet.build(ref_structures, names)
        matched = {i: train_set.match(structures[i]) for i in unique}
        near_idx, near_dist = nearest_training(means, z)
        clock.lap("novelty", len(unique))
    novel = [i for i in unique if reference is None or matched[i] is None]
    accepted = {"novel": novel, "unique": unique, "valid": valid}[keep]

    relaxations: dict[int, Any] = {}
    energies: dict[int, hull.EnergyResult] = {}
    stability: dict[str, Any] = {}
    if relax is not None:
        potential = make_potential(relax)  # here too: the hull's references use it
        results = relax_all([structures[i] for i in accepted],
                            potential if workers == 1 else relax, fmax, int(relax_steps),
                            workers=workers, progress=True)
        relaxations = dict(zip(accepted, results, strict=True))
        clock.lap("relaxation", len(accepted))
        energies, stability = hull.assess(relaxations, potential, training_items,
                                          user_references, out_dir, run.run_dir,
                                          fmax, int(relax_steps))
        clock.lap("energy_above_hull", len(energies))

    width = max(5, len(str(n - 1)))
    ids = [f"cand_{i:0{width}d}" for i in range(n)]
    files = _write_cifs(out_dir, ids, structures, accepted, relaxations)
    sg = {i: space_group(structures[i], symprec) for i in accepted}
    clock.lap("write", len(accepted))
    rows = _rows(ids, structures, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
                 near_idx, near_dist, reference, predicted, prop, relaxations, sg, set(accepted),
                 reference is not None, energies)
    bv.write_text(out_dir / "candidates.csv", _csv(rows))
    files.append("candidates.csv")
    summary = _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations,
                       reference, reference_note, predicted, prop, goal, clock, keep, decode,
                       relax)
    if relax is not None:
        novel_set = set(novel) if reference is not None else None
        summary["funnel"].update(hull.funnel(relaxations, energies))
        summary["stability"] = {**stability, **hull.sun(n, relaxations, energies, novel_set)}
        files += hull.write_figure(out_dir, energies, relax, relaxations)
    summary["latent"] = latent_source
    summary["options"] = {"latent": latent, "latent_components": latent_components,
                          "relax": relax, "relax_steps": relax_steps, "fmax": fmax,
                          "target": goal, "target_steps": target_steps, "target_lr": target_lr,
                          "prior_weight": prior_weight, "decode": decode, "keep": keep,
                          "training": None if training is None else str(training),
                          "symprec": symprec, "seed": run.seed, "workers": workers,
                          "reference": None if hull_reference is None else str(hull_reference)}
    bv.write_json(out_dir / "report.json", summary)
    files.append("report.json")
    objects = {ids[i]: structures[i] for i in accepted}
    return CandidateReport(objects=objects, summary=summary, files=files)


def _write_cifs(out_dir: Path, ids: Sequence[str], structures: Sequence[Structure | None],
                accepted: Sequence[int], relaxations: dict[int, Any]) -> list[str]:
    from pymatgen.io.cif import CifWriter

    files = []
    for i in accepted:
        bv.write_text(out_dir / f"{ids[i]}.cif", str(CifWriter(structures[i])))
        files.append(f"{ids[i]}.cif")
        relaxed = relaxations.get(i)
        if relaxed is not None and relaxed.structure is not None:
            bv.write_text(out_dir / f"{ids[i]}_relaxed.cif", str(CifWriter(relaxed.structure)))
            files.append(f"{ids[i]}_relaxed.cif")
    return files


def _rows(ids, structures, struct_ok, struct_why, comp_ok, comp_why, first_of, matched,
          near_idx, near_dist, reference, predicted, prop, relaxations, sg, accepted,
          checked_novelty, energies) -> list[dict[str, Any]]:
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
            row["relax_steps"] = r.steps if r else ""
            row["max_force"] = r.max_force if r and r.max_force is not None else ""
            e = energies.get(i)
            row["e_form_per_atom"] = e.e_form_per_atom if e and e.e_form_per_atom is not None \
                else ""
            row["e_above_hull"] = e.e_above_hull if e and e.e_above_hull is not None else ""
            row["hull_problem"] = e.reason if e else ""
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


def _accepted_means(keep: str, novelty_checked: bool) -> str:
    if keep == "valid":
        return "valid (valid)"
    if keep == "unique" or not novelty_checked:
        note = "" if keep == "unique" else "; novelty not checked"
        return f"{keep} (valid, unique{note})"
    return "novel (valid, unique, novel)"


def _summary(n, struct_ok, comp_ok, valid, unique, novel, accepted, relaxations, reference,
             reference_note, predicted, prop, goal, clock, keep, decode, relax
             ) -> dict[str, Any]:
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
        "accepted_means": _accepted_means(keep, reference is not None),
        "novelty_reference": reference_note,
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
