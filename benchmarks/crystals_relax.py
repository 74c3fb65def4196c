"""Cost of relaxing crystal candidates with CHGNet (FIRE on ASE's FrechetCellFilter, fmax
0.05 eV/Å, 200 steps), ours against the anchor in the same run on the same candidates,
one torch thread and one BLAS thread.

The anchor is the previous code path: one structure at a time, CHGNet's own
`predict_graph(task="efs")` per FIRE step through an ASE calculator, ASE's
FrechetCellFilter as it is. Ours is `betavae_crystals.relax.relax_batch`: one backward
pass for forces and stress, the filter computing its forces and matrix log once per
position, and the structures stepped in lockstep with one batched CHGNet call per step.
Rows: ours one structure at a time (no lockstep), ours in lockstep batches of --batch
(the size a worker process gets), and ours in lockstep from starts moved by 1e-6 Å, which
says how far the same physics lands from a start that differs by float rounding: the
noise floor of a relaxation stopped at fmax. Energy columns compare each row with the
anchor, candidate by candidate. The methods alternate, batch by batch, so that they see
the same load on a shared machine; times are process CPU seconds and wall seconds.

    python benchmarks/crystals_relax.py CANDIDATES [--n 20] [--batch 8] [--steps 200]

CANDIDATES is a `betavae generate` output folder: the first --n accepted candidates'
CIF files are relaxed.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _tables import table
from pymatgen.core import Structure
from threadpoolctl import threadpool_limits

from betavae_crystals.relax import CHGNetPotential, Relaxation, relax_batch

MOVE = 1e-6  # Å, the start shift of the noise-floor row


def candidates(folder: Path, n: int) -> list[Structure]:
    with open(folder / "candidates.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["accepted"] == "True"]
    return [Structure.from_file(folder / r["cif"]) for r in rows[:n]]


def anchor_relax(structure: Structure, model, fmax: float, steps: int) -> Relaxation:
    """The previous code path: CHGNet's predict_graph per FIRE step, plain filter."""
    from ase import units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    class Anchor(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            graph = model.graph_converter(AseAtomsAdaptor.get_structure(self.atoms))
            pred = model.predict_graph(graph, task="efs")
            energy = float(pred["e"]) * len(self.atoms)
            self.results = {"energy": energy, "free_energy": energy, "forces": pred["f"],
                            "stress": pred["s"] * units.GPa}

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = Anchor()
    optimiser = FIRE(FrechetCellFilter(atoms), logfile=None)
    try:
        converged = bool(optimiser.run(fmax=fmax, steps=steps))
        energy = float(atoms.get_potential_energy()) / len(atoms)
    except Exception as exc:
        return Relaxation("failed", reason=f"{type(exc).__name__}: {exc}")
    return Relaxation("converged" if converged else "not_converged", energy,
                      int(optimiser.nsteps))


def moved(structure: Structure, rng: np.random.Generator) -> Structure:
    out = structure.copy()
    shift = rng.normal(size=(len(out), 3))
    shift *= MOVE / np.linalg.norm(shift, axis=1, keepdims=True)
    for i, d in enumerate(shift):
        out.translate_sites([i], d, frac_coords=False, to_unit_cell=False)
    return out


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def row(name: str, results: list[Relaxation], cpu: float, wall: float,
        anchor: list[Relaxation] | None, anchor_cpu: float) -> list[str]:
    n = len(results)
    evaluations = sum(r.steps + 1 for r in results)  # FIRE evaluates once more than it steps
    cells = [name, str(n), str(sum(r.converged for r in results)), str(evaluations),
             f"{cpu / n:.2f}", f"{wall / n:.2f}", f"{1000 * cpu / evaluations:.1f}",
             f"{anchor_cpu / cpu:.2f}" if anchor is not None else "1.00"]
    if anchor is None:
        return cells + ["–", "–", "–"]
    both = [(a, b) for a, b in zip(anchor, results, strict=True)
            if a.energy_per_atom is not None and b.energy_per_atom is not None]
    diff = np.array([abs(a.energy_per_atom - b.energy_per_atom) for a, b in both])
    flags = sum(a.status == b.status for a, b in zip(anchor, results, strict=True))
    return cells + [f"{diff.max():.1e}" if len(diff) else "–",
                    f"{int((diff > 1e-4).sum())}/{len(diff)}", f"{flags}/{n}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", type=Path)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--fmax", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(limits=1)  # as relaxation runs in betavae (BLAS threads only contend)
    warnings.simplefilter("ignore")
    structures = candidates(args.candidates, args.n)
    potential = CHGNetPotential()
    rng = np.random.default_rng(0)
    names = ("anchor: predict_graph per step, one at a time", "ours, one at a time",
             f"ours, lockstep batches of {args.batch}",
             f"ours, lockstep, starts moved {MOVE:g} Å (noise floor)")
    results: dict[str, list[Relaxation]] = {k: [] for k in names}
    cpu = dict.fromkeys(names, 0.0)
    wall = dict.fromkeys(names, 0.0)
    runs = (
        lambda part: [anchor_relax(s, potential.model, args.fmax, args.steps) for s in part],
        lambda part: [relax_batch([s], potential, args.fmax, args.steps)[0] for s in part],
        lambda part: relax_batch(part, potential, args.fmax, args.steps),
        lambda part: relax_batch([moved(s, rng) for s in part], potential, args.fmax,
                                 args.steps),
    )
    for start in range(0, len(structures), args.batch):
        part = structures[start:start + args.batch]
        for name, run in zip(names, runs, strict=True):
            out, c, w = timed(lambda run=run, part=part: run(part))
            results[name] += out
            cpu[name] += c
            wall[name] += w
        print(f"  {start + len(part)}/{len(structures)} candidates", flush=True)
    anchor = names[0]
    header = ["method", "relaxations", "converged", "CHGNet evaluations", "CPU s / relaxation",
              "wall s / relaxation", "CPU ms / evaluation", "speed-up (CPU)",
              "max abs dE vs anchor (eV/atom)", "dE > 1e-4", "same status"]
    rows = [row(k, results[k], cpu[k], wall[k], None if k == anchor else results[anchor],
                cpu[anchor]) for k in names]
    print(f"\n{len(structures)} candidates from {args.candidates}; FIRE fmax {args.fmax}, "
          f"{args.steps} steps; torch {torch.__version__}, 1 thread, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print(table(header, rows))


if __name__ == "__main__":
    main()
