"""betavae_crystals: learn from crystal structures and generate new candidate materials.

A betavae plugin (entry point `crystals`) built on pymatgen and ase: loaders for folders
of CIF/POSCAR/extended-XYZ files, CSV tables with a CIF column and ASE databases; an
invertible fixed-size tensor per crystal; a mixed decoder likelihood (Gaussian lattice,
von Mises coordinates, categorical species, property head); the `crystals` generator
(validity -> uniqueness -> novelty -> optional relaxation, CIF files and a report); and
the CDVAE-protocol evaluations.
"""

from .api import decode_latents_to_structures, encode_structures, generate_candidates
from .crystal_data import from_structures
from .representation import CrystalRepresentation

__all__ = ["CrystalRepresentation", "decode_latents_to_structures", "encode_structures",
           "from_structures", "generate_candidates"]
