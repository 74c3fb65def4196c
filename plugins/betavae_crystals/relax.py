"""Relaxation of candidates with an interatomic potential: EMT (built into ASE, for the
metals it has parameters for) or CHGNet (the optional extra `betavae[chgnet]`; its
weights ship inside the package, so nothing downloads). Positions and cell relax
together: ASE's FIRE on a `FrechetCellFilter`.

Cost: one CHGNet call on a 5-atom Perov-5 cell (~300 edges within its 5 Å cutoff) takes
~0.15 s on one CPU core, and batching graphs does not lower the per-structure cost on a
CPU (measured: 32 structures in one call, 5.9 s), so a relaxation of ~100 FIRE steps
takes ~15 s. `workers=N` spreads the structures over N processes (spawned, one model
load each) with a progress bar; single-point energies (the hull's training references)
go through CHGNet in batches. A structure whose elements the potential does not cover is kept and
flagged `skipped`; one that does not reach `fmax` within `steps` is `not_converged`; a
potential that raises flags its structure `failed` with the reason.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure

from betavae_core import ConfigError

from .representation import single_blas_thread

CALCULATORS = ("emt", "chgnet")
CHGNET_MAX_Z = 94  # CHGNet's element embedding stops at plutonium
BATCH = 32  # structures per worker task, and per CHGNet single-point call
PIP_CHGNET = "pip install 'betavae[chgnet]'"


@dataclass
class Relaxation:
    """What one relaxation did."""

    status: str  # "converged", "not_converged", "skipped" or "failed"
    energy_per_atom: float | None = None
    steps: int = 0
    structure: Structure | None = None
    reason: str = ""
    max_force: float | None = None  # eV/Å, largest force on an atom at the end

    @property
    def converged(self) -> bool:
        return self.status == "converged"


# --- potentials ------------------------------------------------------------------------
class Potential:
    """A potential that evaluates many ASE Atoms at once: `evaluate(atoms_list)` returns,
    per structure, a dict of ASE results (energy eV, forces eV/Å, stress eV/Å^3) or the
    exception that structure raised."""

    name = ""

    def coverage_problem(self, structure: Structure) -> str:
        """Why this potential cannot handle `structure` ('' when it can)."""
        return ""

    def evaluate(self, atoms_list: Sequence[Any]) -> list[dict[str, Any] | Exception]:
        raise NotImplementedError


class EMTPotential(Potential):
    name = "emt"

    def __init__(self) -> None:
        from ase.calculators.emt import EMT, parameters

        self._emt, self.elements = EMT, set(parameters)

    def coverage_problem(self, structure: Structure) -> str:
        missing = sorted({el.symbol for el in structure.composition} - self.elements)
        return f"EMT has no parameters for {', '.join(missing)}" if missing else ""

    def evaluate(self, atoms_list: Sequence[Any]) -> list[dict[str, Any] | Exception]:
        out: list[dict[str, Any] | Exception] = []
        for atoms in atoms_list:
            try:
                atoms = atoms.copy()
                atoms.calc = self._emt()
                out.append({"energy": atoms.get_potential_energy(),
                            "forces": atoms.get_forces(), "stress": atoms.get_stress()})
            except Exception as exc:  # EMT raises on atoms it cannot place
                out.append(exc)
        return out


class CHGNetPotential(Potential):
    name = "chgnet"

    def __init__(self) -> None:
        try:
            from chgnet.model import CHGNet
        except ImportError:
            raise ConfigError(f"relax=chgnet needs the chgnet package: {PIP_CHGNET} (its "
                              f"weights ship with it, nothing downloads), or use "
                              f"relax=emt.") from None
        from ase import units

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = CHGNet.load(verbose=False, use_device="cpu")
        self.model.graph_converter.set_isolated_atom_response("ignore")
        self.stress_weight = units.GPa  # CHGNet predicts GPa; ASE wants eV/Å^3

    def coverage_problem(self, structure: Structure) -> str:
        beyond = sorted({el.symbol for el in structure.composition if el.Z > CHGNET_MAX_Z})
        return (f"CHGNet covers elements up to Z = {CHGNET_MAX_Z} (Pu), not "
                f"{', '.join(beyond)}" if beyond else "")

    def evaluate(self, atoms_list: Sequence[Any]) -> list[dict[str, Any] | Exception]:
        from pymatgen.io.ase import AseAtomsAdaptor

        graphs: list[Any] = []
        out: list[dict[str, Any] | Exception | None] = []
        for atoms in atoms_list:
            try:
                graphs.append(self.model.graph_converter(AseAtomsAdaptor.get_structure(atoms)))
                out.append(None)
            except Exception as exc:  # no neighbours within the cutoff, NaN cell, ...
                out.append(exc)
        if graphs:
            try:
                predictions = self.model.predict_graph(graphs, task="efs",
                                                       batch_size=len(graphs))
            except Exception:  # one bad graph spoils a batch: evaluate one by one
                predictions = [self._one(g) for g in graphs]
            if isinstance(predictions, dict):
                predictions = [predictions]
            it = iter(predictions)
            out = [self._results(next(it), atoms) if r is None else r
                   for r, atoms in zip(out, atoms_list, strict=True)]
        return out  # type: ignore[return-value]

    def _one(self, graph: Any) -> dict[str, Any] | Exception:
        try:
            return self.model.predict_graph(graph, task="efs")
        except Exception as exc:
            return exc

    def _results(self, pred: dict[str, Any] | Exception, atoms: Any
                 ) -> dict[str, Any] | Exception:
        if isinstance(pred, Exception):
            return pred
        return {"energy": float(pred["e"]) * len(atoms), "forces": np.asarray(pred["f"]),
                "stress": np.asarray(pred["s"]) * self.stress_weight}


def make_potential(name: str) -> Potential:
    """The potential called `name` (emt or chgnet)."""
    name = str(name).lower()
    if name == "emt":
        return EMTPotential()
    if name == "chgnet":
        return CHGNetPotential()
    raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {name!r}.")


# --- relaxing with ASE's optimiser ----------------------------------------------------
def _calculator(potential: Potential) -> Any:
    """An ASE calculator that asks `potential` for energy, forces and stress."""
    from ase.calculators.calculator import Calculator, all_changes

    class PotentialCalculator(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms: Any = None, properties: Any = None,
                      system_changes: Any = all_changes) -> None:
            super().calculate(atoms, properties, system_changes)
            (result,) = potential.evaluate([self.atoms])
            if isinstance(result, Exception):
                raise result
            self.results = {**result, "free_energy": result["energy"]}

    return PotentialCalculator()


def relax_structure(structure: Structure, potential: Potential, fmax: float = 0.05,
                    steps: int = 200, relax_cell: bool = True) -> Relaxation:
    """Relax positions (and the cell, on a FrechetCellFilter, unless `relax_cell` is
    False) with FIRE; never raises for a failure of the potential or the optimiser."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = _calculator(potential)
        optimiser = FIRE(FrechetCellFilter(atoms) if relax_cell else atoms, logfile=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converged = bool(optimiser.run(fmax=fmax, steps=steps))
        energy = float(atoms.get_potential_energy()) / len(atoms)
        max_force = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        atoms.calc = None  # the structure must not carry the calculator (pickled to workers)
    except Exception as exc:  # potentials raise on overlapping atoms, NaN forces, ...
        return Relaxation("failed", reason=f"{type(exc).__name__}: {exc}"[:200])
    if not np.isfinite(energy):
        return Relaxation("failed", reason="non-finite energy")
    return Relaxation("converged" if converged else "not_converged", energy,
                      int(optimiser.nsteps), AseAtomsAdaptor.get_structure(atoms),
                      "" if converged else f"fmax {fmax} eV/Å not reached in {steps} steps",
                      round(max_force, 5))


def relax_batch(structures: Sequence[Structure], potential: Potential, fmax: float = 0.05,
                steps: int = 200, relax_cell: bool = True) -> list[Relaxation]:
    """`relax_structure` on each structure in turn."""
    return [relax_structure(s, potential, fmax, steps, relax_cell) for s in structures]


def single_points(structures: Sequence[Structure], potential: Potential
                  ) -> list[float | Exception]:
    """Energy per atom of each structure as it is (no relaxation), in batches."""
    from pymatgen.io.ase import AseAtomsAdaptor

    out: list[float | Exception] = []
    for start in range(0, len(structures), BATCH):
        part = [AseAtomsAdaptor.get_atoms(s) for s in structures[start:start + BATCH]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = potential.evaluate(part)
        for atoms, r in zip(part, results, strict=True):
            if isinstance(r, Exception):
                out.append(r)
            else:
                e = float(r["energy"]) / len(atoms)
                out.append(e if np.isfinite(e) else ValueError("non-finite energy"))
    return out


# --- worker processes ------------------------------------------------------------------
_WORKER_POTENTIAL: dict[str, Potential] = {}


def _worker_start(name: str) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    _WORKER_POTENTIAL[name] = make_potential(name)  # one model load per worker


def _worker_batch(args: tuple[str, list[Structure], float, int]) -> list[Relaxation]:
    name, structures, fmax, steps = args
    return relax_batch(structures, _WORKER_POTENTIAL[name], fmax, steps)


def _batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@single_blas_thread
def relax_all(structures: Sequence[Structure], calculator: str | Potential,
              fmax: float = 0.05, steps: int = 200, workers: int | None = None,
              progress: bool = False) -> list[Relaxation]:
    """Relax each structure the potential covers; the others are kept, `skipped`, with
    the reason. `workers` > 1 relaxes batches in that many processes."""
    from tqdm.auto import tqdm

    name = calculator.name if isinstance(calculator, Potential) else str(calculator).lower()
    if name not in CALCULATORS:
        raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {calculator!r}.")
    workers = 1 if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers}.")
    in_process = workers == 1 or isinstance(calculator, Potential)
    potential = calculator if isinstance(calculator, Potential) else (
        make_potential(name) if in_process else _check_importable(name))
    out: list[Relaxation | None] = [None] * len(structures)
    todo = []
    for i, s in enumerate(structures):
        problem = potential.coverage_problem(s) if potential is not None else ""
        if problem:
            out[i] = Relaxation("skipped", reason=problem)
        else:
            todo.append(i)
    size = BATCH if in_process else max(1, min(8, -(-len(todo) // (2 * workers))))  # bar
    index_batches = _batches(todo, size)
    bar = tqdm(total=len(todo), desc=f"relaxing ({name})", unit="structure",
               disable=not progress or not todo)
    if in_process:
        for idx in index_batches:
            for i, r in zip(idx, relax_batch([structures[i] for i in idx], potential, fmax,
                                             steps), strict=True):
                out[i] = r
            bar.update(len(idx))
    else:
        context = multiprocessing.get_context("spawn")  # not fork: torch's threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_worker_start, initargs=(name,)) as pool:
            jobs = [(name, [structures[i] for i in idx], fmax, steps) for idx in index_batches]
            for idx, results in zip(index_batches, pool.map(_worker_batch, jobs), strict=True):
                for i, r in zip(idx, results, strict=True):
                    out[i] = r
                bar.update(len(idx))
    bar.close()
    return [r if r is not None else Relaxation("failed", reason="no result") for r in out]


def _check_importable(name: str) -> Potential | None:
    """In the parent of worker processes: fail early (with the pip command) when the
    potential's package is missing, and return a coverage checker without loading a
    model (CHGNet's coverage needs no weights)."""
    if name == "emt":
        return EMTPotential()
    try:
        import chgnet  # noqa: F401
    except ImportError:
        raise ConfigError(f"relax=chgnet needs the chgnet package: {PIP_CHGNET} (its "
                          f"weights ship with it, nothing downloads), or use "
                          f"relax=emt.") from None
    checker = object.__new__(CHGNetPotential)
    return checker
