"""Relaxation of candidates with an ASE calculator: EMT (built into ASE, for the metals
it has parameters for) or CHGNet (optional extra; its weights ship inside the package,
so nothing downloads). Positions and cell relax together (FrechetCellFilter + FIRE).

A relaxation that does not reach `fmax` within `steps` keeps its candidate, flagged
`converged=False`; a calculator that raises flags the candidate with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure

from betavae_core import ConfigError

from .representation import single_blas_thread

CALCULATORS = ("emt", "chgnet")


@dataclass
class Relaxation:
    """What one relaxation did."""

    status: str  # "converged", "not_converged", "skipped" or "failed"
    energy_per_atom: float | None = None
    steps: int = 0
    structure: Structure | None = None
    reason: str = ""

    @property
    def converged(self) -> bool:
        return self.status == "converged"


def emt_elements() -> set[str]:
    """Elements ASE's EMT has parameters for."""
    from ase.calculators.emt import parameters

    return set(parameters)


def calculator_factory(name: str) -> tuple[Callable[[], Any], Callable[[Structure], str]]:
    """(make a calculator, why a structure cannot use it ('' if it can))."""
    name = str(name).lower()
    if name == "emt":
        from ase.calculators.emt import EMT

        allowed = emt_elements()

        def emt_reason(s: Structure) -> str:
            missing = sorted({el.symbol for el in s.composition} - allowed)
            return f"EMT has no parameters for {', '.join(missing)}" if missing else ""

        return EMT, emt_reason
    if name == "chgnet":
        try:
            from chgnet.model.dynamics import CHGNetCalculator
        except ImportError:
            raise ConfigError("relax=chgnet needs the chgnet package (pip install chgnet; "
                              "its weights ship with it, nothing downloads). Or use "
                              "relax=emt.") from None
        model_holder: dict[str, Any] = {}

        def make_chgnet() -> Any:
            if "calc" not in model_holder:
                model_holder["calc"] = CHGNetCalculator(use_device="cpu")
            return model_holder["calc"]

        return make_chgnet, lambda s: ""
    raise ConfigError(f"relax must be one of {', '.join(CALCULATORS)}; got {name!r}.")


def relax_structure(structure: Structure, make_calculator: Callable[[], Any],
                    fmax: float = 0.05, steps: int = 200) -> Relaxation:
    """Relax positions and cell; never raises for a calculator or optimiser failure."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    try:
        atoms.calc = make_calculator()
        optimiser = FIRE(FrechetCellFilter(atoms), logfile=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converged = bool(optimiser.run(fmax=fmax, steps=steps))
        energy = float(atoms.get_potential_energy()) / len(atoms)
    except Exception as exc:  # calculators raise on overlapping atoms, NaN forces, ...
        return Relaxation("failed", reason=f"{type(exc).__name__}: {exc}"[:200])
    if not np.isfinite(energy):
        return Relaxation("failed", reason="non-finite energy")
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    return Relaxation("converged" if converged else "not_converged", energy,
                      int(optimiser.nsteps), relaxed,
                      "" if converged else f"fmax {fmax} eV/Å not reached in {steps} steps")


@single_blas_thread
def relax_all(structures: list[Structure], calculator: str, fmax: float = 0.05,
              steps: int = 200) -> list[Relaxation]:
    """Relax each structure the calculator can handle; others are 'skipped' with why."""
    make, reason_for = calculator_factory(calculator)
    out = []
    for s in structures:
        reason = reason_for(s)
        out.append(Relaxation("skipped", reason=reason) if reason
                   else relax_structure(s, make, fmax, steps))
    return out
