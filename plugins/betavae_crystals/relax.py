"""Relaxation of candidates with an interatomic potential: EMT (built into ASE, for the
metals it has parameters for) or CHGNet (the optional extra `betavae[chgnet]`; its
weights ship inside the package, so nothing downloads). Positions and cell relax
together: ASE's FIRE on a `FrechetCellFilter`.

Cost (`benchmarks/crystals_relax.py`, 5-atom Perov-5 candidates, one torch and one BLAS
thread, CPU time): a FIRE step of the previous path took 55 ms: 36 ms CHGNet's own
`predict_graph` (two backward passes, for forces and for stress, each building the graph
of second derivatives that training needs), 12 ms the cell filter (scipy's `logm`, 2 ms
on a 3x3 matrix, four times a step, and nine Fréchet derivatives for each of the three
times ASE asks for the same forces), 3 ms graph conversion. Here: one backward pass for
forces and stress together, with no second-order graph (the same numbers to float32
rounding); the filter computing its forces and matrix log once per position; and
GRAPH_BATCH structures stepped in lockstep, each with its own ASE FIRE, evaluated in one
batched CHGNet call per step: 22 ms a step, 2.6 s a relaxation instead of 6.5 s. Batched
graphs do not cost less per graph beyond ~8 on a CPU. `workers=N` spreads batches over
N processes (spawned, one model load each, one torch and BLAS thread each) with a
progress bar.
A structure whose elements the potential does not cover is kept and flagged `skipped`;
one that does not reach `fmax` within `steps` is `not_converged`; a potential that
raises flags its structure `failed` with the reason.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pymatgen.core import Structure

from betavae_core import ConfigError

from .representation import single_blas_thread

CALCULATORS = ("emt", "chgnet")
CHGNET_MAX_Z = 94  # CHGNet's element embedding stops at plutonium
BATCH = 32  # structures per progress-bar update in this process, and per single-point call
GRAPH_BATCH = 8  # structures relaxing at once, graphs per CHGNet call (measured on one
# core, CPU ms per graph: 30 alone, 25 in 2, 23 in 4 or 8, 25 in 16, 28 in 32)
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
        self.model.eval()
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
        predictions: list[dict[str, Any] | Exception] = []
        for start in range(0, len(graphs), GRAPH_BATCH):
            part = graphs[start:start + GRAPH_BATCH]
            try:
                predictions += self.energy_forces_stress(part)
            except Exception:  # one bad graph spoils a batch: evaluate one by one
                predictions += [self._one(g) for g in part]
        it = iter(predictions)
        return [self._results(next(it), atoms) if r is None else r
                for r, atoms in zip(out, atoms_list, strict=True)]

    def energy_forces_stress(self, graphs: Sequence[Any]) -> list[dict[str, Any]]:
        """CHGNet's energy (eV/atom), forces (eV/Å) and stress (GPa) of each graph, as its
        `predict_graph(task="efs")` gives them, from one backward pass for forces and
        stress together and without the graph for second derivatives that
        `predict_graph` builds (it keeps one for training): about half the time."""
        import torch
        from chgnet.model.model import BatchedGraph

        model = self.model
        batch = BatchedGraph.from_graphs(graphs, bond_basis_expansion=model.bond_basis_expansion,
                                         angle_basis_expansion=model.angle_basis_expansion,
                                         compute_stress=True)
        pred = model._compute(batch)  # energy only; CHGNet's forward without its gradients
        energy = pred["e"] * pred["atoms_per_graph"] if model.is_intensive else pred["e"]
        grads = torch.autograd.grad(energy.sum(), [*batch.atom_positions, *batch.strains])
        shift = 0 if model.composition_model is None else model.composition_model(graphs)
        per_graph = (pred["e"] + shift).detach().numpy()
        scale = 1 / batch.volumes * 160.21766208  # eV/Å^3 -> GPa, as CHGNet scales it
        n = len(graphs)
        return [{"e": per_graph[i], "f": -grads[i].numpy(), "s": (grads[n + i] * scale[i]).numpy()}
                for i in range(n)]

    def _one(self, graph: Any) -> dict[str, Any] | Exception:
        try:
            return self.energy_forces_stress([graph])[0]
        except Exception as exc:
            return exc

    def _results(self, pred: dict[str, Any] | Exception, atoms: Any
                 ) -> dict[str, Any] | Exception:
        if isinstance(pred, Exception):
            return pred
        atoms_factor = len(atoms) if self.model.is_intensive else 1
        return {"energy": float(pred["e"]) * atoms_factor, "forces": np.asarray(pred["f"]),
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
@cache
def _filter_class() -> type:
    """ASE's FrechetCellFilter, computing the same thing once: its forces once per
    position and cell (ASE asks for them three times per FIRE step: the log, the
    convergence test, the step; each costs a matrix log and nine Fréchet derivatives),
    and the matrix log of the deformation once per cell (the step's positions need the
    log the forces just took; scipy's `logm` takes ~2 ms on a 3x3 matrix)."""
    from ase.filters import FrechetCellFilter

    class OncePerPositionFilter(FrechetCellFilter):
        _key: Any = None

        def __init__(self, atoms: Any, **kwargs: Any) -> None:
            super().__init__(atoms, **kwargs)
            # ase >= 3.26 takes the log in a helper (`_utility`), older ones in the filter
            for holder in (self, getattr(self, "_utility", None)):
                if holder is not None and hasattr(holder, "logm"):
                    holder.logm = _last_value(holder.logm)

        def get_forces(self, **kwargs: Any) -> np.ndarray:
            key = (self.atoms.positions.tobytes(), self.atoms.cell.array.tobytes(),
                   id(self.atoms.calc))
            if key != self._key:
                self._forces, self._stress = super().get_forces(**kwargs), self.stress
                self._key = key
            self.stress = self._stress
            return self._forces.copy()

    return OncePerPositionFilter


def _last_value(func: Any) -> Any:
    """`func` of one array, remembering its last argument and value."""
    last: list[Any] = [None, None]

    def remembered(matrix: np.ndarray) -> np.ndarray:
        key = np.asarray(matrix).tobytes()
        if key != last[0]:
            last[:] = [key, func(matrix)]
        return last[1].copy()

    return remembered


class _Relaxing:
    """One structure of a lockstep batch: its ASE atoms and its own FIRE optimiser, driven
    as FIRE's `run` drives it (evaluate, test convergence, step) but with the energies,
    forces and stresses handed in from one batched call of the potential."""

    def __init__(self, structure: Structure, fmax: float, steps: int, relax_cell: bool):
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        self.atoms = AseAtomsAdaptor.get_atoms(structure)
        self.fmax, self.steps = fmax, steps
        target = _filter_class()(self.atoms) if relax_cell else self.atoms
        self.optimiser = FIRE(target, logfile=None)
        self.optimiser.fmax = fmax  # what FIRE.run(fmax=...) sets
        self.done: Relaxation | None = None

    def advance(self, result: dict[str, Any] | Exception) -> None:
        """Take the potential's `result` at the current positions; stop (converged, or
        out of steps) or take one FIRE step."""
        from ase.calculators.singlepoint import SinglePointCalculator

        if isinstance(result, Exception):
            self.done = _failed(result)
            return
        try:
            self.atoms.calc = SinglePointCalculator(self.atoms, free_energy=result["energy"],
                                                    **result)
            converged = bool(self.optimiser.converged())
            if converged or self.optimiser.nsteps >= self.steps:
                self.done = self._result(converged)
                return
            self.optimiser.step()
            self.optimiser.nsteps += 1
        except Exception as exc:  # a NaN cell in the filter's matrix log, ...
            self.done = _failed(exc)

    def _result(self, converged: bool) -> Relaxation:
        from pymatgen.io.ase import AseAtomsAdaptor

        energy = float(self.atoms.get_potential_energy()) / len(self.atoms)
        max_force = float(np.linalg.norm(self.atoms.get_forces(), axis=1).max())
        self.atoms.calc = None  # the structure must not carry a calculator (pickled)
        if not np.isfinite(energy):
            return Relaxation("failed", reason="non-finite energy")
        return Relaxation("converged" if converged else "not_converged", energy,
                          int(self.optimiser.nsteps), AseAtomsAdaptor.get_structure(self.atoms),
                          "" if converged else
                          f"fmax {self.fmax} eV/Å not reached in {self.steps} steps",
                          round(max_force, 5))


def _failed(exc: Exception) -> Relaxation:
    return Relaxation("failed", reason=f"{type(exc).__name__}: {exc}"[:200])


@single_blas_thread
def relax_batch(structures: Sequence[Structure], potential: Potential, fmax: float = 0.05,
                steps: int = 200, relax_cell: bool = True, width: int = GRAPH_BATCH
                ) -> list[Relaxation]:
    """Relax positions (and the cell, on a FrechetCellFilter, unless `relax_cell` is
    False) of each structure with its own FIRE, `width` of them stepped together: one
    call of the potential per step evaluates them all, and a finished one makes room for
    the next. Never raises for a failure of the potential or the optimiser: that
    structure is `failed`."""
    out: list[Relaxation | None] = [None] * len(structures)
    waiting = iter(range(len(structures)))
    active: list[tuple[int, _Relaxing]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            while len(active) < width and (i := next(waiting, None)) is not None:
                try:
                    active.append((i, _Relaxing(structures[i], fmax, steps, relax_cell)))
                except Exception as exc:  # a structure ASE cannot hold
                    out[i] = _failed(exc)
            if not active:
                break
            results = _evaluate(potential, [run.atoms for _, run in active])
            for (i, run), result in zip(active, results, strict=True):
                run.advance(result)
                out[i] = run.done
            active = [(i, run) for i, run in active if run.done is None]
    return out  # type: ignore[return-value]


def _evaluate(potential: Potential, atoms_list: list[Any]
              ) -> list[dict[str, Any] | Exception]:
    try:
        return potential.evaluate(atoms_list)
    except Exception as exc:  # a potential that raises for the whole batch
        return [exc] * len(atoms_list)


def relax_structure(structure: Structure, potential: Potential, fmax: float = 0.05,
                    steps: int = 200, relax_cell: bool = True) -> Relaxation:
    """`relax_batch` of one structure."""
    return relax_batch([structure], potential, fmax, steps, relax_cell)[0]


@single_blas_thread
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
    size = BATCH if in_process else max(1, min(16, -(-len(todo) // (2 * workers))))
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
