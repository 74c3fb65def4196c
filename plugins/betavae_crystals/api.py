"""Python entry points for crystals: structures in, fitted model, candidates out.

    from betavae_crystals import from_structures, generate_candidates
    data = from_structures(structures, {"formation_energy": energies})
    fitted = betavae_core.fit(data, ...)
    report = generate_candidates(fitted.model, data, 1000, "cands/", relax="emt")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pymatgen.core import Structure

from betavae_core.data import DomainData
from betavae_core.generate import generate
from betavae_core.results import CandidateReport

from .crystal_data import GENERATOR, from_structures
from .evaluations import decode_latents, posterior_means
from .representation import CrystalRepresentation


def generate_candidates(model: Any, data: DomainData, n: int, out_dir: str | Path, *,
                        seed: int = 0, relax: str | None = None,
                        target: float | None = None, training: Any = None,
                        **options: Any) -> CandidateReport:
    """Sample n crystals from `model` (fit on `data`) and write the accepted candidates,
    `candidates.csv` and `report.json` into the new directory `out_dir`.

    Novelty is checked against `training` (default: `data` itself). Other options are
    the generator's (`relax_steps`, `fmax`, `decode`, `keep`, `symprec`, ...).
    """
    opts = {"relax": relax, "target": target, "training": data if training is None
            else training, **options}
    return generate(model, n, out_dir, generator=GENERATOR, seed=seed, attrs=data.attrs,
                    options={k: v for k, v in opts.items() if v is not None})


def encode_structures(model: Any, structures: Sequence[Any], attrs: dict[str, Any]
                      ) -> torch.Tensor:
    """Posterior means (n, latent_dim) of structures under a model fit on data with
    `attrs`; a structure the model cannot represent is an error naming it."""
    data = from_structures(structures, like=attrs, strict=True)
    return posterior_means(model, data)


def decode_latents_to_structures(model: Any, z: torch.Tensor, attrs: dict[str, Any]
                                 ) -> list[Structure | None]:
    """Structures decoded from latent codes (None where every slot decodes empty)."""
    items, _ = decode_latents(model, z)
    return CrystalRepresentation.from_attrs(attrs).decode(items)
