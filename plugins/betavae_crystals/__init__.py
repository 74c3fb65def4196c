"""betavae_crystals: learn from crystal structures and generate new candidate materials.

A betavae plugin (entry point `crystals`, registered in `plugin`) built on pymatgen and
ase: loaders for folders of CIF/POSCAR/extended-XYZ files, CSV tables with a CIF column
and ASE databases; an invertible fixed-size tensor per crystal; a mixed decoder
likelihood (Gaussian lattice, von Mises coordinates, categorical species, property head);
the `crystals` generator (validity -> uniqueness -> novelty -> optional relaxation, CIF
files and a report); and the CDVAE-protocol evaluations. The Python API is in `api`.

Importing this package is cheap (the entry point imports it for `betavae --help`): the
names below load their module, and with it torch and pymatgen, on first use.
"""

from __future__ import annotations

from betavae_core import lazy_exports

# name -> submodule that defines it; imported on first access.
_LAZY = {
    "CrystalRepresentation": "representation",
    "decode_latents_to_structures": "api",
    "encode_structures": "api",
    "from_structures": "crystal_data",
    "generate_candidates": "api",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
