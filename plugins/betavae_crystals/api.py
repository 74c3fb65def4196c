"""Python entry points for crystals: structures in, fitted model, candidates out.

    import betavae_core as bv
    from betavae_crystals import from_structures, generate_candidates
    data = from_structures(structures, {"formation_energy": energies})
    fitted = bv.fit(data)            # the crystals defaults: beta 0.05, latent 16, ...
    report = generate_candidates(fitted.model, data, 1000, "cands/", relax="emt")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

import betavae_core as bv
from betavae_core import CandidateReport, DataError, DomainData

from .crystal_data import as_entries, build_data, from_structures
from .plugin import GENERATOR
from .representation import CrystalRepresentation


def generate_candidates(model: bv.BetaVAE, data: DomainData, n: int, out_dir: str | Path, *,
                        seed: int = 0, relax: str | None = None,
                        target: float | str | None = None, training: Any = None,
                        **options: Any) -> CandidateReport:
    """Sample n crystals from `model` (fit on `data`) and write the accepted candidates,
    `candidates.csv` and `report.json` into the new directory `out_dir`.

    Novelty is checked against `training`: a `DomainData`, a list of Structures or
    ase.Atoms, a path, or "none" (default: `data` itself). Other options are the
    generator's (`relax_steps`, `fmax`, `decode`, `keep`, `latent`, `symprec`, ...).
    """
    reference = data if training is None else training
    opts = {"relax": relax, "target": target, **options}
    train_data = None
    if isinstance(reference, (str, Path)):
        opts["training"] = str(reference)
    elif isinstance(reference, DomainData):
        train_data = reference
    else:
        train_data = from_structures(list(reference), like=data.attrs, strict=False)
    run = bv.RunContext(model=model, train_data=train_data, split="none")
    return bv.generate(run, n, out_dir, generator=GENERATOR, seed=seed, attrs=data.attrs,
                       options={k: v for k, v in opts.items() if v is not None})


def encode_structures(model: bv.BetaVAE, structures: Sequence[Any], attrs: dict[str, Any],
                      *, names: Sequence[str] | None = None) -> np.ndarray:
    """Posterior means (n, latent_dim) of structures (optionally `names`d) under a model
    fit on data with `attrs`. The fit's checks apply: a structure the model cannot
    represent (species its vocabulary has not seen, too many sites) is an error naming
    it, as is a name given twice."""
    entries = as_entries(structures, names)
    if not entries:
        raise DataError("no structures given to encode.")
    data = build_data(entries, source={"kind": "memory"}, strict=True, like=attrs, lenient="")
    model.check_input(data)
    return bv.encode(model, data)[0]


def decode_latents_to_structures(model: bv.BetaVAE, z: np.ndarray | torch.Tensor,
                                 attrs: dict[str, Any]) -> list[Structure | None]:
    """The most probable structure for each latent code (None where every slot decodes
    empty)."""
    items = bv.decode(model, z, mean=True, sample=False).mean
    return CrystalRepresentation.from_attrs(attrs).decode(items)
